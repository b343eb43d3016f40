//! An operator's "retry now": the partition keys a sink holds in backoff (after a failure or
//! a `Retry-After`) made due at once, their attempts and retry budget as they were, recorded
//! in the audit stream `sink:NAME`, and the relay woken to deliver them.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;

use super::Wake;
use crate::clock::Clock;
use crate::outcome::{Retried, Unavailable};
use crate::storage::{AuditDraft, Storage};

/// The most keys one write releases; a sink holding more is released in several.
const BATCH: usize = 500;

/// The most keys one call releases: a bound on the call, and on its audit events.
const MOST: usize = 100_000;

/// Releases the keys held at a sink. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Release {
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    wake: Wake,
    sinks: Arc<BTreeSet<String>>,
}

impl Release {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        wake: Wake,
        sinks: BTreeSet<String>,
    ) -> Self {
        Self {
            storage,
            clock,
            wake,
            sinks: Arc::new(sinks),
        }
    }

    /// Makes the keys `sink` holds in backoff (only `partition_key` when given) due now.
    pub(crate) async fn release(&self, sink: &str, partition_key: Option<String>) -> Retried {
        if !self.sinks.contains(sink) {
            return Retried::UnknownSink { sink: sink.into() };
        }
        let this = self.clone();
        let owned = sink.to_owned();
        let ran =
            tokio::task::spawn_blocking(move || this.release_blocking(&owned, partition_key)).await;
        match ran {
            Ok(Ok(keys)) => {
                if !keys.is_empty() {
                    tracing::info!(sink, keys = keys.len(), "held keys released by an operator");
                    self.wake.notify();
                }
                Retried::Released {
                    sink: sink.into(),
                    keys,
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "releasing held keys failed");
                Retried::Unavailable(Unavailable::Storage(e.to_string()))
            }
            Err(_) => Retried::Unavailable(Unavailable::Internal("the release task failed".into())),
        }
    }

    fn release_blocking(
        &self,
        sink: &str,
        partition_key: Option<String>,
    ) -> Result<Vec<String>, crate::storage::StorageError> {
        let stream = format!("sink:{sink}");
        let mut keys = Vec::new();
        while keys.len() < MOST {
            let now = self.clock.now();
            let audit = |released: &crate::storage::Released| {
                vec![AuditDraft::new(
                    &stream,
                    now,
                    "released",
                    json!({"sink": sink, "partition_keys": released.keys}),
                )]
            };
            let released =
                self.storage
                    .release_held(sink, partition_key.as_deref(), now, BATCH, &audit)?;
            keys.extend(released.keys);
            if !released.more {
                break;
            }
        }
        Ok(keys)
    }
}
