-- 0001: the store's first layout in PostgreSQL.
--
-- Every table lives in the schema `dragoman`. Times are microseconds since the Unix epoch
-- (bigint, UTC), as the host's clock gave them. A record the host reads whole (an outcome, an
-- event, a dead letter, an audit event, a snapshot) is its JSON as `bytea`: exactly the bytes
-- the host wrote and hashed, one format byte first. Text keys compare byte by byte
-- (COLLATE "C"), as ids and partition keys are ordered by the host.

-- Idempotency keys: a processed key's outcome, and the claim of a delivery in flight. A claim
-- is columns of the key's row, so every replica sees it. It ends at `claim_until_us`, or as
-- soon as its owner is gone: each host holds a session advisory lock on its `claim_owner`
-- key while it lives, and a claim whose owner's lock is not held is nobody's.
CREATE TABLE dragoman.idempotency (
    route          text COLLATE "C" NOT NULL,
    key            text COLLATE "C" NOT NULL,
    completed      bytea,
    expires_us     bigint,
    claim_token    bigint,
    claim_until_us bigint,
    claim_owner    bigint,
    PRIMARY KEY (route, key),
    CHECK ((completed IS NULL) = (expires_us IS NULL)),
    CHECK ((claim_token IS NULL) = (claim_until_us IS NULL))
);
CREATE INDEX idempotency_expiry ON dragoman.idempotency (expires_us)
    WHERE completed IS NOT NULL;
CREATE INDEX idempotency_claims ON dragoman.idempotency (claim_until_us)
    WHERE completed IS NULL;

-- Messages as received.
CREATE TABLE dragoman.messages (
    id           text COLLATE "C" PRIMARY KEY,
    route        text NOT NULL,
    key          text NOT NULL,
    content_type text,
    headers      bytea NOT NULL,
    body         bytea NOT NULL,
    received_us  bigint NOT NULL,
    cut_size     bigint,
    cut_sha256   text
);

-- The outbox: each event once, numbered in commit order per partition key (a commit takes
-- its numbers while it holds its partition keys' locks). `sinks_left` counts the sinks still
-- to deliver it; `published_us` is set when the last one has, and the row is swept after the
-- relay's retention.
CREATE TABLE dragoman.outbox (
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition_key text COLLATE "C" NOT NULL,
    time_us       bigint NOT NULL,
    event         bytea NOT NULL,
    sinks_left    integer NOT NULL CHECK (sinks_left >= 0),
    published_us  bigint
);
CREATE INDEX outbox_waiting ON dragoman.outbox (seq) WHERE sinks_left > 0;
CREATE INDEX outbox_published ON dragoman.outbox (published_us)
    WHERE published_us IS NOT NULL;

-- Each sink's delivery state of each event it still waits for, by partition key in order.
CREATE TABLE dragoman.deliveries (
    sink            text COLLATE "C" NOT NULL,
    partition_key   text COLLATE "C" NOT NULL,
    seq             bigint NOT NULL REFERENCES dragoman.outbox (seq),
    attempts        integer NOT NULL DEFAULT 0,
    next_at_us      bigint,
    last_error      text,
    first_failed_us bigint,
    PRIMARY KEY (sink, partition_key, seq)
);
CREATE INDEX deliveries_seq ON dragoman.deliveries (seq);

-- One row per (sink, partition key) with deliveries to go: when its next one is due. The
-- relay reads a sink's due chains by this index and nothing else.
CREATE TABLE dragoman.chains (
    sink          text COLLATE "C" NOT NULL,
    partition_key text COLLATE "C" NOT NULL,
    due_us        bigint NOT NULL,
    PRIMARY KEY (sink, partition_key)
);
CREATE INDEX chains_due ON dragoman.chains (sink, due_us, partition_key);

-- The dead letter channel; ids are time-ordered.
CREATE TABLE dragoman.dead_letters (
    id    text COLLATE "C" PRIMARY KEY,
    route text COLLATE "C" NOT NULL,
    bytes bigint NOT NULL,
    entry bytea NOT NULL
);
CREATE INDEX dead_letters_route ON dragoman.dead_letters (route, id);

-- The audit trail: one row per event, chained by hash within its stream (a message's).
CREATE TABLE dragoman.audit (
    stream  text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    event   bytea NOT NULL,
    PRIMARY KEY (stream, version)
);

-- Entity streams, the entity types each route's events were about, and snapshots by
-- projector version.
CREATE TABLE dragoman.entity_events (
    entity_type text COLLATE "C" NOT NULL,
    entity_id   text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    event       bytea NOT NULL,
    PRIMARY KEY (entity_type, entity_id, seq)
);
CREATE TABLE dragoman.entity_types (
    route       text COLLATE "C" NOT NULL,
    entity_type text COLLATE "C" NOT NULL,
    PRIMARY KEY (route, entity_type)
);
CREATE TABLE dragoman.snapshots (
    projector   text COLLATE "C" NOT NULL,
    entity_type text COLLATE "C" NOT NULL,
    entity_id   text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    snapshot    bytea NOT NULL,
    PRIMARY KEY (projector, entity_type, entity_id, seq)
);

-- The last good answer of each command type and subject, for `cached` degradation (the key
-- is the host's, with NUL separators: bytes).
CREATE TABLE dragoman.answers (
    key    bytea PRIMARY KEY,
    at_us  bigint NOT NULL,
    answer bytea NOT NULL
);

-- Whether the host that owns a claim still lives: its session holds the advisory lock on
-- the owner key (a bigint lock shows as classid, objid with objsubid 1).
CREATE FUNCTION dragoman.owner_alive(owner bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT owner IS NOT NULL AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_locks
        WHERE locktype = 'advisory' AND objsubid = 1 AND granted
          AND database = (SELECT oid FROM pg_catalog.pg_database
                          WHERE datname = current_database())
          AND ((classid::bigint << 32) | objid::bigint) = owner
    )
$$;
