-- 0003: what each plugin serves, shared by the hosts of one database.
--
-- A host that activates a version, starts a canary or ends one writes the plugin's row here
-- (the component kept once, by its sha256), with a new generation; every host reads the
-- rows above the last generation it applied and serves the same. A host starting reads them
-- all, so what the plugins serve (a canary too) survives a restart of every host.

CREATE TABLE dragoman.plugin_components (
    sha256 text COLLATE "C" PRIMARY KEY,
    wasm   bytea NOT NULL
);

CREATE SEQUENCE dragoman.plugin_generation;

CREATE TABLE dragoman.plugins (
    name           text COLLATE "C" PRIMARY KEY,
    sha256         text COLLATE "C" NOT NULL REFERENCES dragoman.plugin_components (sha256),
    canary_percent integer CHECK (canary_percent BETWEEN 1 AND 99),
    origin         bigint NOT NULL,
    generation     bigint NOT NULL
);
CREATE INDEX plugins_generation ON dragoman.plugins (generation);
