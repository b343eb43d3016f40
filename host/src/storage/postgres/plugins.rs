//! What each plugin serves, shared by the hosts of one database (migration 0003): one row per
//! plugin naming the version it serves (and a canary's share), with a generation that grows
//! with every change, and each component kept once by its sha256.

use super::connections::Connections;
use crate::storage::{SharedPlugin, StorageError};

/// Records what `shared.name` serves now, with a new generation.
pub(super) async fn share(pool: &Connections, shared: &SharedPlugin) -> Result<(), StorageError> {
    let percent = shared.canary.map(i32::from);
    pool.execute(
        "WITH c AS (
             INSERT INTO dragoman.plugin_components (sha256, wasm) VALUES ($2, $3)
             ON CONFLICT (sha256) DO NOTHING
         )
         INSERT INTO dragoman.plugins (name, sha256, canary_percent, origin, generation)
         VALUES ($1, $2, $4, $5, nextval('dragoman.plugin_generation'))
         ON CONFLICT (name) DO UPDATE SET
             sha256 = EXCLUDED.sha256, canary_percent = EXCLUDED.canary_percent,
             origin = EXCLUDED.origin, generation = EXCLUDED.generation",
        &[
            &shared.name,
            &shared.sha256,
            &shared.wasm,
            &percent,
            &shared.origin,
        ],
    )
    .await
    .map(drop)
}

/// The plugins whose rows changed after generation `after`, in generation order.
pub(super) async fn changed_since(
    pool: &Connections,
    after: u64,
) -> Result<Vec<SharedPlugin>, StorageError> {
    // One row per plugin: as few as the plugins.
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = pool
        .query(
            "SELECT p.name, p.sha256, p.canary_percent, p.origin, p.generation, c.wasm
             FROM dragoman.plugins p JOIN dragoman.plugin_components c USING (sha256)
             WHERE p.generation > $1 ORDER BY p.generation",
            &[&after],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| SharedPlugin {
            name: row.get(0),
            sha256: row.get(1),
            canary: row
                .get::<_, Option<i32>>(2)
                .and_then(|p| u8::try_from(p).ok()),
            origin: row.get(3),
            generation: row.get::<_, i64>(4) as u64,
            wasm: row.get(5),
        })
        .collect())
}
