//! `[checkpoints]`: the key that signs the checkpoints of every chain head, the sink they are
//! published to, and how often.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::secret::RawSecret;
use super::sinks::SinkConfig;
use crate::checkpoint::SignerKey;

/// By default, a checkpoint an hour.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheckpoints {
    key: RawSecret,
    sink: String,
    interval_secs: Option<u64>,
}

/// Signed checkpoints, as the host publishes them.
#[derive(Debug, Clone)]
pub struct CheckpointsConfig {
    /// The Ed25519 key that signs (its name is the checkpoints' origin).
    pub key: SignerKey,
    /// The sink checkpoints are published to.
    pub sink: String,
    /// How often.
    pub interval: Duration,
}

impl RawCheckpoints {
    pub(super) fn check(
        self,
        base: &Path,
        sinks: &BTreeMap<String, SinkConfig>,
    ) -> Result<CheckpointsConfig, String> {
        let key = self.key.resolve(base, "checkpoints.key")?;
        let key = SignerKey::parse(key.expose()).map_err(|e| format!("checkpoints.key: {e}"))?;
        if !sinks.contains_key(&self.sink) {
            return Err(format!(
                "checkpoints.sink: no sink named `{}` in [sinks]",
                self.sink
            ));
        }
        Ok(CheckpointsConfig {
            key,
            sink: self.sink,
            interval: self.interval_secs.map_or(DEFAULT_CHECKPOINT_INTERVAL, |s| {
                Duration::from_secs(s.max(1))
            }),
        })
    }
}
