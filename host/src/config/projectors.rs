//! The `[projectors.TYPE]` tables: which projector component folds each entity type, and how
//! often its states are snapshotted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProjector {
    plugin: PathBuf,
    snapshot_every: Option<u64>,
}

/// The projector of one entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorConfig {
    /// The component (`dragoman:projector` contract).
    pub plugin: PathBuf,
    /// A snapshot every this many events of a stream.
    pub snapshot_every: u64,
}

/// Checks the tables: an entity type is one lower-case segment, a snapshot interval at
/// least 1.
pub(super) fn check(
    raw: BTreeMap<String, RawProjector>,
    base: &Path,
) -> Result<BTreeMap<String, ProjectorConfig>, String> {
    let mut out = BTreeMap::new();
    for (entity_type, projector) in raw {
        let valid = entity_type
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase())
            && entity_type
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid {
            return Err(format!(
                "projectors.{entity_type}: an entity type is the first segment of event types \
                 (lower-case letters, digits, `-` and `_`, such as `order`)"
            ));
        }
        let snapshot_every = projector
            .snapshot_every
            .unwrap_or(crate::projection::DEFAULT_SNAPSHOT_EVERY);
        if snapshot_every == 0 {
            return Err(format!(
                "projectors.{entity_type}.snapshot_every is 0: give at least 1"
            ));
        }
        out.insert(
            entity_type,
            ProjectorConfig {
                plugin: super::resolve(base, &projector.plugin),
                snapshot_every,
            },
        );
    }
    Ok(out)
}
