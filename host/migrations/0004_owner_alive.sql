-- 0004: whether a claim's owner lives is read from one place, the view `dragoman.owners`
-- (0002), which the leases read too; 0001's function had its own copy of the query.

CREATE OR REPLACE FUNCTION dragoman.owner_alive(owner bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT owner IS NOT NULL AND owner IN (SELECT o.owner FROM dragoman.owners o)
$$;
