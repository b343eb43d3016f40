//! Which kept versions go: of each plugin, the newest `keep` stay, and so does every version
//! that is protected (active on a route, in a route's history for rollback, serving a canary
//! or a shadow); the rest are removed, with their compiled files. A pure function, so the
//! dry run and the real one choose the same.

use std::collections::{BTreeMap, BTreeSet};

use super::Version;

/// The versions of `kept` to remove: per plugin, all but the newest `keep` (by when they were
/// received) and those in `protected` (by sha256); oldest first.
pub(crate) fn plan(kept: &[Version], keep: usize, protected: &BTreeSet<String>) -> Vec<Version> {
    let mut by_plugin: BTreeMap<&str, Vec<&Version>> = BTreeMap::new();
    for version in kept {
        by_plugin.entry(&version.name).or_default().push(version);
    }
    let mut gone: Vec<Version> = by_plugin
        .into_values()
        .flat_map(|mut versions| {
            versions.sort_by(|a, b| (b.received_at, &b.sha256).cmp(&(a.received_at, &a.sha256)));
            versions
                .into_iter()
                .skip(keep)
                .filter(|v| !protected.contains(&v.sha256))
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    gone.sort_by(|a, b| (a.received_at, &a.sha256).cmp(&(b.received_at, &b.sha256)));
    gone
}
