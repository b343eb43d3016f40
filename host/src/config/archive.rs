//! `[archive]`: where audit history past its route's hot retention goes and how often the host
//! moves it; and a route's hot retention, `[routes.NAME.retention]`: how long its audit
//! history and its message bodies stay in the store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// By default, the host archives once an hour.
pub const DEFAULT_ARCHIVE_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArchive {
    dir: PathBuf,
    interval_secs: Option<u64>,
}

/// The archive the host moves old audit history to.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// The directory of segments (relative paths are relative to the config file).
    pub dir: PathBuf,
    /// How often a run goes.
    pub interval: Duration,
}

impl RawArchive {
    pub(super) fn check(self, base: &Path) -> ArchiveConfig {
        ArchiveConfig {
            dir: base.join(self.dir),
            interval: self
                .interval_secs
                .map_or(DEFAULT_ARCHIVE_INTERVAL, |s| Duration::from_secs(s.max(1))),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    history_secs: Option<u64>,
    bodies_secs: Option<u64>,
}

/// How long a route's records stay in the store. `None`: for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HotRetention {
    /// Its messages' audit events older than this move to the archive (`[archive]` must be
    /// set); at least the route's idempotency retention.
    pub history: Option<Duration>,
    /// Its messages' bodies older than this are removed, but for a dead-lettered message's
    /// (kept to replay it) and a message whose events some sink still waits for.
    pub bodies: Option<Duration>,
}

impl RawRetention {
    pub(super) fn check(
        self,
        route: &str,
        archive: bool,
        idempotency: Duration,
    ) -> Result<HotRetention, String> {
        if self.history_secs.is_some() && !archive {
            return Err(format!(
                "routes.{route}.retention.history_secs moves history to the archive: set \
                 [archive] dir"
            ));
        }
        // A redelivery answered from its key notes itself on the message's stream: the
        // stream must not be closed in the archive while that can happen.
        if let Some(history) = self.history_secs
            && Duration::from_secs(history) < idempotency
        {
            return Err(format!(
                "routes.{route}.retention.history_secs ({history}) is shorter than the route's \
                 idempotency retention ({} s): a redelivery would note itself on a stream \
                 already archived",
                idempotency.as_secs()
            ));
        }
        Ok(HotRetention {
            history: self.history_secs.map(Duration::from_secs),
            bodies: self.bodies_secs.map(Duration::from_secs),
        })
    }
}
