//! The pipeline: what happens to a message between the door and the outbox, and to a dead
//! letter when it is replayed or discarded. One operation per file:
//!
//! - `admission.rs`: what every message passes before any plugin runs;
//! - `ingest.rs`: claim the key, translate, commit, answer once durable;
//! - `activate.rs`: a plugin's version received, checked and made active on the routes that
//!   serve the plugin while messages flow, and the way back;
//! - `collect.rs`: the registry and the compiled cache kept within their bounds;
//! - `canary.rs`: a candidate version serving a share of a route's messages, judged, and
//!   rolled back by itself when it fails more than the stable one;
//! - `command.rs`: the outbound side: claim the key, encode, call the vendor through its
//!   breaker (or degrade as the route says while it is open), decode, commit, answer; and
//!   the sending of a command queued while the circuit was open (`command/queued.rs`);
//! - `shadow.rs`: a candidate version translating a route's live messages on a thread of its
//!   own, compared with the active version's output and never committed;
//! - `commit.rs`: what one commit of a message holds, accepted or dead-lettered;
//! - `translate.rs`: the same translation, stored nowhere;
//! - `dead_letters.rs`: replay and discard;
//! - `replay.rs`: a batch of a route's dead letters replayed through a kept version, dry run
//!   first;
//! - `queries.rs`: what the store and the routes tell (dead letters, a message's state and
//!   history, the audit check, the topology);
//! - `routes.rs`: the routes with their loaded plugins.
//!
//! Every operation answers with a typed outcome (`crate::outcome`); none knows about HTTP.
//! Blocking work (plugin calls, store writes) runs on blocking threads, bounded by a fair
//! semaphore.

mod activate;
mod admission;
mod canary;
mod collect;
mod command;
mod commit;
mod dead_letters;
mod headers;
mod ingest;
mod queries;
mod replay;
mod routes;
mod shadow;
mod share;
mod translate;

use std::sync::Arc;

pub(crate) use activate::Versions;
pub(crate) use admission::check_key;
pub use admission::{MAX_KEY_LEN, check_message};
pub(crate) use command::QueuedCommands;
pub(crate) use queries::MAX_LISTING;
pub use replay::{MAX_BATCH, ReplayFilter};
pub(crate) use routes::Routes;

use crate::clock::Clock;
use crate::relay::Wake;
use crate::storage::Storage;
use crate::telemetry::Metrics;
use crate::vendor::Vendors;

/// A message as it arrives, independent of the transport.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    /// The declared content type.
    pub content_type: Option<String>,
    /// Every header, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The caller's idempotency key, if it sent one.
    pub idempotency_key: Option<String>,
    /// The caller's W3C trace context, if it sent one.
    pub traceparent: Option<String>,
    /// The vendors' entries of the caller's trace context (W3C `tracestate`), if it sent one.
    pub tracestate: Option<String>,
}

/// The pipeline's operations over the routes and the store. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    core: Arc<Core>,
}

#[derive(Debug)]
struct Core {
    routes: Routes,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Wakes the relay after a commit.
    wake: Wake,
    /// The vendors routes send commands to.
    vendors: Vendors,
    /// The plugin registry, the runtime candidate versions load into, and the canary policy.
    versions: activate::Versions,
    /// The dead letter entries being replayed now: one replay of an entry runs at a time.
    replaying: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Bounds the plugin calls running at once: more threads than cores only add switching,
    /// and a fair queue keeps the latency tail short. An ingest gives its permit back once
    /// the plugin is done: its commit waits on the store, not a core, and the commits that
    /// wait together are written as one batch.
    workers: Arc<tokio::sync::Semaphore>,
    workers_count: usize,
}

impl Pipeline {
    pub(crate) fn new(
        routes: Routes,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        wake: Wake,
        vendors: Vendors,
        versions: Versions,
    ) -> Self {
        let workers = default_workers();
        Self {
            core: Arc::new(Core {
                routes,
                storage,
                clock,
                metrics,
                wake,
                vendors,
                versions,
                replaying: std::sync::Mutex::default(),
                workers: Arc::new(tokio::sync::Semaphore::new(workers)),
                workers_count: workers,
            }),
        }
    }

    /// How many messages are worked on at once.
    pub(crate) fn workers(&self) -> usize {
        self.core.workers_count
    }

    /// The store.
    pub(crate) fn storage(&self) -> &Arc<dyn Storage> {
        &self.core.storage
    }

    /// Makes what was committed durable, then wakes the relay if the commit gave it
    /// something to deliver (`outbox`): a commit that did not costs the relay no pass.
    async fn durable(&self, outbox: bool) -> Result<(), crate::storage::StorageError> {
        let flushed = std::time::Instant::now();
        self.core.storage.durable().await?;
        self.core.metrics.observe("flush", flushed);
        if outbox {
            self.core.wake.notify();
        }
        Ok(())
    }
}

/// How many plugin calls run at once: twice the cores (a call that waits on the store or a
/// vendor leaves its core to another).
pub(crate) fn default_workers() -> usize {
    cores() * 2
}

/// The cores this process may run on.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// What every message or command gets as it arrives: the time, the body's hash, its id and
/// its trace context.
struct Arrival {
    now: jiff::Timestamp,
    /// The sha256 of the body.
    fingerprint: String,
    id: uuid::Uuid,
    trace: crate::trace::TraceContext,
}

impl Pipeline {
    /// Counts a message or command arriving on `route` and gives it its id and trace (that of
    /// `span`, where it arrived, when traced).
    fn arrive(&self, route: &str, incoming: &Incoming, span: &tracing::Span) -> Arrival {
        self.core.metrics.received(route);
        let id = uuid::Uuid::now_v7();
        Arrival {
            now: self.core.clock.now(),
            fingerprint: crate::plugin::sha256_hex(&incoming.body),
            id,
            trace: crate::trace::carried(
                span,
                incoming.traceparent.as_deref(),
                incoming.tracestate.as_deref(),
                id,
            ),
        }
    }
}

/// The key when neither the caller nor the plugin gives one: the body's hash.
fn hash_key(fingerprint: &str) -> String {
    format!("sha256:{fingerprint}")
}

/// Why a commit wrote nothing.
enum NotWritten {
    /// Another delivery took the claim over (its in-flight timeout passed).
    TakenOver(crate::outcome::InFlight),
    /// The store failed; the claim was given back.
    Failed(crate::outcome::Unavailable),
}

impl Pipeline {
    /// Writes `commit` for the holder of `claim`: a claim taken over by another delivery
    /// writes nothing, and a failed write gives the claim back so that a redelivery runs
    /// (IC-4).
    fn write_commit(
        &self,
        commit: crate::storage::Commit,
        claim: &crate::storage::ClaimToken,
    ) -> Result<(), NotWritten> {
        let dead_letter_route = commit.dead_letter.as_ref().map(|e| e.route.clone());
        match self.core.storage.commit(commit) {
            Ok(()) => {
                if let Some(route) = dead_letter_route {
                    self.bound_dead_letters(&route);
                }
                Ok(())
            }
            Err(crate::storage::StorageError::ClaimLost { key }) => {
                Err(NotWritten::TakenOver(crate::outcome::InFlight {
                    idempotency_key: key,
                    taken_over: true,
                }))
            }
            Err(e) => {
                self.release(claim);
                Err(NotWritten::Failed(storage_failure(&e)))
            }
        }
    }
}

impl Pipeline {
    /// Keeps `route`'s dead letters within its bound after a write that added one; a store
    /// that fails here is logged (the bound is enforced again at the next write).
    fn bound_dead_letters(&self, route: &str) {
        let Some(bound) = self.core.routes.get(route).map(|r| r.dead_letters) else {
            return;
        };
        let now = self.core.clock.now();
        if let Err(e) =
            crate::evict::enforce(&*self.core.storage, &self.core.metrics, route, bound, now)
        {
            tracing::error!(route, error = %e, "keeping the dead letters within their bound failed");
        }
    }
}

/// The plugin's view of a message: the headers as the contract's records.
fn vendor_message(
    id: String,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> crate::plugin::VendorMessage {
    crate::plugin::VendorMessage {
        id,
        content_type,
        headers: headers
            .into_iter()
            .map(|(name, value)| crate::plugin::Header { name, value })
            .collect(),
        body,
    }
}

/// A plugin's `transient` refusal: retry in a second, nothing stored.
fn transient(failure: crate::plugin::Failure) -> crate::outcome::Transient {
    crate::outcome::Transient {
        code: failure.code,
        message: failure.message,
        retry_after: crate::outcome::RETRY_AFTER,
    }
}

/// A store that failed: logged, and answered as a retry-later.
fn storage_failure(e: &crate::storage::StorageError) -> crate::outcome::Unavailable {
    tracing::error!(error = %e, "storage failed");
    crate::outcome::Unavailable::Storage(e.to_string())
}
