-- 0002: delivery split between hosts by leases.
--
-- Each sink's partition keys fall in 64 buckets (a hash of the key, computed by the
-- database, so every host agrees). A host delivers a chain only while it holds the lease of
-- its bucket at that sink: a row with its holder, a term that grows with every new holder,
-- and an expiry on the database's clock, renewed by its holder for its own term only. A
-- delivery is recorded only by the holder of the current term, so a host that lost a lease
-- cannot record one. A lease's holder is its host's claim owner key: a lease whose host is
-- gone (its session's advisory lock released) is free at once, like that host's claims.

ALTER TABLE dragoman.chains
    ADD COLUMN bucket integer NOT NULL
    GENERATED ALWAYS AS ((hashtextextended(partition_key, 0) & 63)::integer) STORED;
CREATE INDEX chains_bucket_due ON dragoman.chains (sink, bucket, due_us, partition_key);

CREATE TABLE dragoman.leases (
    sink       text COLLATE "C" NOT NULL,
    bucket     integer NOT NULL CHECK (bucket BETWEEN 0 AND 63),
    holder     bigint NOT NULL,
    term       bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (sink, bucket)
);

-- The claim owner keys whose hosts live (their sessions hold their advisory locks), read
-- once per statement that needs several.
CREATE VIEW dragoman.owners AS
    SELECT (classid::bigint << 32) | objid::bigint AS owner
    FROM pg_catalog.pg_locks
    WHERE locktype = 'advisory' AND objsubid = 1 AND granted
      AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database());
