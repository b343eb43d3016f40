//! `Host`: the routes with their loaded plugins, the store, the sinks and the relay, and the
//! operations the HTTP API and embedders call: ingest, translate, the dead letter channel and
//! the audit trail. `serve` runs it on a listener until a shutdown future resolves.
//!
//! Shutdown order: stop accepting, finish in-flight requests, stop the relay after its
//! current pass, flush the store.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::audit::{self, Finding, MessageState};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, RetryPolicy};
use crate::db::Db;
use crate::metrics::{Metrics, RouteLabel};
use crate::plugin::{
    DomainEvent, Fault, Instances, Plugin, Runtime, TranslateError, VendorMessage,
};
use crate::sink::Sink;
use crate::storage::{
    AuditDraft, AuditEvent, Claim, ClaimToken, Commit, Completed, DeadLetter, DeadLetterKind,
    MessageRecord, OutboxEvent, Storage, StorageError,
};
use crate::{Error, relay, transport};

/// The longest idempotency key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// A running integration host. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub(crate) config: Config,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) routes: BTreeMap<String, Route>,
    pub(crate) sinks: BTreeMap<String, Arc<Sink>>,
    pub(crate) metrics: Metrics,
    pub(crate) relay_wake: Notify,
    pub(crate) relay_running: AtomicBool,
    /// Bounds the blocking work (plugin calls, store writes) running at once: more threads
    /// than cores only add switching, and a fair queue keeps the latency tail short.
    pub(crate) workers: tokio::sync::Semaphore,
}

/// A route with its loaded plugin.
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) plugin: Plugin,
    /// The plugin's instances with the route's config, reused as the route says.
    pub(crate) instances: Instances,
    pub(crate) sinks: Vec<String>,
    pub(crate) retention: Duration,
    pub(crate) inflight_timeout: Duration,
    pub(crate) retry: RetryPolicy,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("routes", &self.inner.routes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Host`] from a [`Config`].
#[derive(Debug, Default)]
pub struct HostBuilder {
    config: Option<Config>,
    clock: Option<Arc<dyn Clock>>,
    storage: Option<Arc<dyn Storage>>,
}

impl HostBuilder {
    /// The configuration.
    ///
    /// By default, none: `build` fails without one.
    pub fn config(&mut self, config: Config) -> &mut Self {
        self.config = Some(config);
        self
    }

    /// The clock for expiry, retention and backoff.
    ///
    /// By default, the system clock.
    pub fn clock(&mut self, clock: Arc<dyn Clock>) -> &mut Self {
        self.clock = Some(clock);
        self
    }

    /// The store.
    ///
    /// By default, the embedded sled store in the config's `data_dir`.
    pub fn storage(&mut self, storage: Arc<dyn Storage>) -> &mut Self {
        self.storage = Some(storage);
        self
    }

    /// Loads every route's plugin and opens the store.
    ///
    /// # Errors
    ///
    /// A load error naming the route's plugin, or a storage error when the store cannot be
    /// opened.
    pub fn build(&self) -> Result<Host, Error> {
        let config = self
            .config
            .clone()
            .ok_or_else(|| Error::config("no configuration given".into()))?;
        let mut builder = Runtime::builder();
        builder
            .limits(config.limits)
            .max_instances(config.max_instances)
            .cache_dir(&config.cache_dir);
        let runtime = builder.build()?;
        let mut routes = BTreeMap::new();
        for (name, route) in &config.routes {
            let plugin = runtime.load_file(&route.plugin)?;
            if !plugin.directions().inbound {
                return Err(Error::config(format!(
                    "route {name}: plugin {} does not implement the inbound direction",
                    route.plugin.display()
                )));
            }
            routes.insert(
                name.clone(),
                Route {
                    name: name.clone(),
                    instances: Instances::new(
                        plugin.clone(),
                        Arc::new(route.plugin_config.clone()),
                        route.instance_reuse,
                    ),
                    plugin,
                    sinks: route.sinks.clone(),
                    retention: route.retention,
                    inflight_timeout: route.inflight_timeout,
                    retry: route.retry,
                },
            );
        }
        let mut sinks = BTreeMap::new();
        for (name, sink) in &config.sinks {
            let sink = Sink::new(sink).map_err(|e| Error::config(format!("sink {name}: {e}")))?;
            sinks.insert(name.clone(), Arc::new(sink));
        }
        let storage: Arc<dyn Storage> = match &self.storage {
            Some(storage) => storage.clone(),
            None => Arc::new(Db::open(&config.data_dir)?),
        };
        Ok(Host {
            inner: Arc::new(HostInner {
                config,
                storage,
                clock: self.clock.clone().unwrap_or_else(|| Arc::new(SystemClock)),
                routes,
                sinks,
                metrics: Metrics::default(),
                relay_wake: Notify::new(),
                relay_running: AtomicBool::new(false),
                workers: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(4, |n| n.get() * 2),
                ),
            }),
        })
    }
}

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
}

/// What the host answers, independent of the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body (JSON, or problem details).
    pub body: Vec<u8>,
    /// Whether `body` is problem details (RFC 9457).
    pub problem: bool,
    /// Whether this is the stored outcome of an earlier delivery.
    pub replayed: bool,
    /// Seconds after which to retry, for 503.
    pub retry_after: Option<u32>,
}

impl Answer {
    pub(crate) fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            body: serde_json::to_vec(body).expect("JSON values serialize"),
            problem: false,
            replayed: false,
            retry_after: None,
        }
    }

    /// An RFC 9457 problem: `kind` is the last part of its type URI.
    pub(crate) fn problem(
        status: u16,
        kind: &str,
        title: &str,
        detail: &str,
        extra: serde_json::Value,
    ) -> Self {
        let mut body = json!({
            "type": format!("urn:dragoman:problem:{kind}"),
            "title": title,
            "status": status,
            "detail": detail,
        });
        if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        Self {
            problem: true,
            ..Self::json(status, &body)
        }
    }
}

/// What happened in the blocking part of an ingest.
struct Ingested {
    answer: Answer,
    committed: bool,
}

impl Host {
    /// A builder.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The store.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// Serves the HTTP API on `listener` and runs the relay until `shutdown` resolves, then
    /// shuts down in order: stop accepting, finish in-flight requests, stop the relay, flush.
    ///
    /// # Errors
    ///
    /// When the store cannot be flushed at the end.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let cancel = CancellationToken::new();
        let relay = tokio::spawn(relay::run(self.clone(), cancel.clone()));
        transport::serve(self.clone(), listener, shutdown).await;
        cancel.cancel();
        if let Err(e) = relay.await {
            tracing::error!(error = %e, "the relay task failed");
        }
        self.inner.storage.durable().await?;
        tracing::info!("shut down cleanly");
        Ok(())
    }

    /// Wakes the relay (after a commit).
    pub(crate) fn wake_relay(&self) {
        self.inner.relay_wake.notify_one();
    }

    /// What every message passes before any plugin runs: a known route and a readable body.
    fn admit(&self, route: &str, incoming: &Incoming) -> Result<(), Answer> {
        if !self.inner.routes.contains_key(route) {
            return Err(unknown_route(route));
        }
        well_formed(incoming)
    }

    /// Ingests one message on `route`: deduplicates it, translates it, commits the outcome
    /// and answers once it is durable.
    pub async fn ingest(&self, route: &str, incoming: Incoming) -> Answer {
        if let Err(answer) = self.admit(route, &incoming) {
            return answer;
        }
        let host = self.clone();
        let route = route.to_owned();
        let started = Instant::now();
        let Ok(permit) = self.inner.workers.acquire().await else {
            return internal("the host is shutting down");
        };
        let ingested =
            tokio::task::spawn_blocking(move || host.ingest_blocking(&route, incoming)).await;
        drop(permit);
        let ingested = match ingested {
            Ok(ingested) => ingested,
            Err(e) => {
                tracing::error!(error = %e, "ingest task failed");
                return internal("the ingest task failed");
            }
        };
        if ingested.committed {
            let flushed = Instant::now();
            if let Err(e) = self.inner.storage.durable().await {
                tracing::error!(error = %e, "flush failed");
                return internal("the commit could not be made durable");
            }
            self.inner.metrics.observe("flush", flushed);
            self.wake_relay();
        }
        self.inner.metrics.observe("ingest", started);
        ingested.answer
    }

    fn ingest_blocking(&self, route_name: &str, incoming: Incoming) -> Ingested {
        let inner = &self.inner;
        let route = &inner.routes[route_name];
        let label = RouteLabel {
            route: route_name.to_owned(),
        };
        inner.metrics.received.get_or_create(&label).inc();
        let now = inner.clock.now();
        let fingerprint = crate::plugin::sha256_hex(&incoming.body);
        let message_id = uuid::Uuid::now_v7();
        let traceparent = traceparent(incoming.traceparent.as_deref(), message_id);
        let message_id = message_id.to_string();
        let span = tracing::info_span!("message", message_id = %message_id, route = route_name);
        let _entered = span.enter();
        let message = vendor_message(
            message_id.clone(),
            incoming.content_type.clone(),
            incoming.headers.clone(),
            incoming.body,
        );

        let started = Instant::now();
        let mut session = route.instances.get();
        let mut fault: Option<Fault> = None;
        let key = match incoming.idempotency_key {
            Some(key) => key,
            None => {
                let derived = match &mut session {
                    Ok(session) => session.idempotency_key(&message).unwrap_or_else(|f| {
                        fault = Some(f);
                        None
                    }),
                    Err(f) => {
                        fault = Some(f.clone());
                        None
                    }
                };
                derived
                    .filter(|k| valid_key(k).is_ok())
                    .unwrap_or_else(|| format!("sha256:{fingerprint}"))
            }
        };

        let claim = match inner
            .storage
            .claim(route_name, &key, now, route.inflight_timeout)
        {
            Ok(Claim::Fresh(claim)) => claim,
            Ok(Claim::Done(done)) => {
                return self.duplicate(route, &label, &key, &fingerprint, done, now);
            }
            Ok(Claim::InFlight) => {
                return refused(Answer::problem(
                    409,
                    "in-flight",
                    "Message in flight",
                    &format!(
                        "a message with idempotency key `{key}` is being processed; retry later"
                    ),
                    json!({"idempotency_key": key}),
                ));
            }
            Err(e) => return refused(storage_failure(&e)),
        };

        let outcome = match (fault, session) {
            (Some(fault), _) | (None, Err(fault)) => Err(fault),
            (None, Ok(mut session)) => session.translate(&message),
        };
        inner.metrics.observe("translate", started);
        let record = MessageRecord {
            id: message_id.clone(),
            route: route_name.to_owned(),
            key: key.clone(),
            content_type: message.content_type.clone(),
            headers: incoming.headers,
            body: message.body,
            received_at: now,
        };
        let received = self.draft(
            &message_id,
            now,
            "received",
            json!({
                "route": route_name,
                "idempotency_key": key,
                "content_type": record.content_type,
                "bytes": record.body.len(),
                "fingerprint": fingerprint,
            }),
        );
        let expires_at = now.checked_add(route.retention).unwrap_or(Timestamp::MAX);
        let commit = match outcome {
            Ok(Ok(events)) => self.accepted(
                route,
                record,
                events,
                &traceparent,
                now,
                vec![received],
                Some(claim.clone()),
                fingerprint,
                expires_at,
            ),
            Ok(Err(TranslateError::Transient(failure))) => {
                if let Err(e) = inner.storage.release(&claim) {
                    tracing::error!(error = %e, "releasing a claim failed");
                }
                return refused(transient(&failure, json!({"code": failure.code})));
            }
            Ok(Err(TranslateError::Rejected(failure))) => self.rejected(
                route,
                record,
                &failure.code,
                &failure.message,
                vec![received],
                Some(claim.clone()),
                fingerprint,
                expires_at,
                now,
            ),
            Err(fault) => self.rejected(
                route,
                record,
                "plugin-fault",
                &fault.to_string(),
                vec![received],
                Some(claim.clone()),
                fingerprint,
                expires_at,
                now,
            ),
        };
        let answer = Answer {
            status: commit.completed.status,
            body: commit.completed.body.clone(),
            problem: commit.completed.status >= 400,
            replayed: false,
            retry_after: None,
        };
        let accepted = commit.dead_letter.is_none();
        let started = Instant::now();
        match inner.storage.commit(commit) {
            Ok(()) => {
                inner.metrics.observe("commit", started);
                if accepted {
                    inner.metrics.translated.get_or_create(&label).inc();
                } else {
                    inner.metrics.rejected.get_or_create(&label).inc();
                }
                Ingested {
                    answer,
                    committed: true,
                }
            }
            Err(StorageError::ClaimLost { key }) => refused(Answer::problem(
                409,
                "in-flight",
                "Message in flight",
                &format!("the claim on `{key}` was taken over; retry later"),
                json!({}),
            )),
            Err(e) => {
                // Nothing was written: give the key back so a redelivery runs (IC-4).
                if let Err(release) = inner.storage.release(&claim) {
                    tracing::error!(error = %release, "releasing a claim failed");
                }
                refused(storage_failure(&e))
            }
        }
    }

    fn duplicate(
        &self,
        route: &Route,
        label: &RouteLabel,
        key: &str,
        fingerprint: &str,
        done: Completed,
        now: Timestamp,
    ) -> Ingested {
        if done.fingerprint != fingerprint {
            return refused(Answer::problem(
                422,
                "key-reuse",
                "Idempotency key reused",
                &format!("idempotency key `{key}` was used for a different payload"),
                json!({"idempotency_key": key, "message_id": done.message_id}),
            ));
        }
        self.inner.metrics.duplicates.get_or_create(label).inc();
        let draft = self.draft(
            &done.message_id,
            now,
            "deduplicated",
            json!({"route": route.name, "idempotency_key": key}),
        );
        if let Err(e) = self.inner.storage.append(vec![draft]) {
            tracing::warn!(error = %e, "recording a duplicate in the audit trail failed");
        }
        let status = if done.status == 202 { 200 } else { done.status };
        refused(Answer {
            status,
            body: done.body,
            problem: status >= 400,
            replayed: true,
            retry_after: None,
        })
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one commit's parts, assembled in one place"
    )]
    fn accepted(
        &self,
        route: &Route,
        record: MessageRecord,
        events: Vec<DomainEvent>,
        traceparent: &str,
        now: Timestamp,
        mut audit: Vec<AuditDraft>,
        claim: Option<ClaimToken>,
        fingerprint: String,
        expires_at: Timestamp,
    ) -> Commit {
        let events: Vec<OutboxEvent> = events
            .into_iter()
            .map(|event| OutboxEvent {
                id: uuid::Uuid::now_v7().to_string(),
                message_id: record.id.clone(),
                route: route.name.clone(),
                event_type: event.event_type,
                subject: event.subject,
                partition_key: event.partition_key,
                data: event.data.get().to_owned(),
                time: now,
                traceparent: traceparent.to_owned(),
            })
            .collect();
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let plugin = route.plugin.id();
        audit.push(self.draft(
            &record.id,
            now,
            "translated",
            json!({
                "plugin": format!("{}@{}", plugin.name, plugin.version),
                "sha256": plugin.sha256,
                "events": ids.len(),
            }),
        ));
        audit.push(self.draft(
            &record.id,
            now,
            "committed",
            json!({"events": ids, "sinks": route.sinks}),
        ));
        let body = json!({"message_id": record.id, "idempotency_key": record.key, "events": ids});
        Commit {
            claim,
            completed: Completed {
                fingerprint,
                message_id: record.id.clone(),
                status: 202,
                body: serde_json::to_vec(&body).expect("JSON values serialize"),
                expires_at,
            },
            message: record,
            events: events
                .into_iter()
                .map(|e| (e, route.sinks.clone()))
                .collect(),
            dead_letter: None,
            resolves: None,
            audit,
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one commit's parts, assembled in one place"
    )]
    fn rejected(
        &self,
        route: &Route,
        record: MessageRecord,
        code: &str,
        error: &str,
        mut audit: Vec<AuditDraft>,
        claim: Option<ClaimToken>,
        fingerprint: String,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Commit {
        let plugin = route.plugin.id();
        let entry = DeadLetter {
            id: uuid::Uuid::now_v7().to_string(),
            kind: DeadLetterKind::Translation,
            message_id: record.id.clone(),
            route: route.name.clone(),
            error: error.to_owned(),
            code: code.to_owned(),
            plugin: format!("{}@{}", plugin.name, plugin.version),
            plugin_sha256: plugin.sha256.clone(),
            attempts: 1,
            created_at: now,
            updated_at: now,
        };
        audit.push(self.draft(&record.id, now, "rejected", json!({"code": code, "error": error, "plugin": entry.plugin, "sha256": entry.plugin_sha256})));
        audit.push(self.draft(
            &record.id,
            now,
            "dead_lettered",
            json!({"dead_letter": entry.id, "error": error}),
        ));
        let answer = Answer::problem(
            422,
            if code == "plugin-fault" {
                "plugin-fault"
            } else {
                "rejected"
            },
            if code == "plugin-fault" {
                "The translator failed"
            } else {
                "The translator rejected the message"
            },
            error,
            json!({"code": code, "dead_letter": entry.id, "message_id": record.id}),
        );
        Commit {
            claim,
            completed: Completed {
                fingerprint,
                message_id: record.id.clone(),
                status: 422,
                body: answer.body,
                expires_at,
            },
            message: record,
            events: Vec::new(),
            dead_letter: Some(entry),
            resolves: None,
            audit,
        }
    }

    pub(crate) fn draft(
        &self,
        message_id: &str,
        at: Timestamp,
        kind: &str,
        data: serde_json::Value,
    ) -> AuditDraft {
        AuditDraft {
            message_id: message_id.to_owned(),
            kind: kind.to_owned(),
            data,
            at,
        }
    }

    /// Translates a message with the route's plugin and stores nothing.
    pub async fn translate(&self, route: &str, incoming: Incoming) -> Answer {
        if let Err(answer) = self.admit(route, &incoming) {
            return answer;
        }
        let host = self.clone();
        let route = route.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            let route = &host.inner.routes[&route];
            let message = vendor_message(
                uuid::Uuid::now_v7().to_string(),
                incoming.content_type,
                incoming.headers,
                incoming.body,
            );
            let mut session = route.instances.get()?;
            let key = session.idempotency_key(&message)?;
            Ok::<_, Fault>((key, session.translate(&message)?))
        })
        .await;
        match result {
            Ok(Ok((key, Ok(events)))) => {
                Answer::json(200, &json!({"idempotency_key": key, "events": events}))
            }
            Ok(Ok((_, Err(TranslateError::Rejected(f))))) => Answer::problem(
                422,
                "rejected",
                "The translator rejected the message",
                &f.message,
                json!({"code": f.code}),
            ),
            Ok(Ok((_, Err(TranslateError::Transient(f))))) => {
                transient(&f, json!({"code": f.code}))
            }
            Ok(Err(fault)) => Answer::problem(
                422,
                "plugin-fault",
                "The translator failed",
                &fault.to_string(),
                json!({"code": "plugin-fault"}),
            ),
            Err(_) => internal("the translate task failed"),
        }
    }

    /// Re-runs a dead letter through the route's current plugin (a translation entry) or puts
    /// its event back in the outbox (a delivery entry).
    pub async fn replay(&self, id: &str) -> Answer {
        let host = self.clone();
        let id = id.to_owned();
        let result = tokio::task::spawn_blocking(move || host.replay_blocking(&id)).await;
        match result {
            Ok(Ingested { answer, committed }) => {
                if committed {
                    if let Err(e) = self.inner.storage.durable().await {
                        tracing::error!(error = %e, "flush failed");
                        return internal("the replay could not be made durable");
                    }
                    self.wake_relay();
                }
                answer
            }
            Err(_) => internal("the replay task failed"),
        }
    }

    fn replay_blocking(&self, id: &str) -> Ingested {
        let inner = &self.inner;
        let now = inner.clock.now();
        let entry = match inner.storage.dead_letter(id) {
            Ok(Some(entry)) => entry,
            Ok(None) => return refused(not_found("dead letter", id)),
            Err(e) => return refused(storage_failure(&e)),
        };
        let replayed = |data| self.draft(&entry.message_id, now, "replayed", data);
        if let DeadLetterKind::Delivery { event, sink } = &entry.kind {
            let draft = replayed(json!({"dead_letter": id, "sink": sink, "event": event.id}));
            return match inner.storage.requeue(id, vec![draft]) {
                Ok(()) => Ingested {
                    answer: Answer::json(
                        200,
                        &json!({"dead_letter": id, "requeued": event.id, "sink": sink}),
                    ),
                    committed: true,
                },
                Err(e) => refused(storage_failure(&e)),
            };
        }
        let record = match inner.storage.message(&entry.message_id) {
            Ok(Some(record)) => record,
            Ok(None) => return refused(not_found("message", &entry.message_id)),
            Err(e) => return refused(storage_failure(&e)),
        };
        let Some(route) = inner.routes.get(&record.route) else {
            return refused(Answer::problem(
                409,
                "route-gone",
                "Route gone",
                &format!("route `{}` is no longer configured", record.route),
                json!({"dead_letter": id}),
            ));
        };
        let message = vendor_message(
            record.id.clone(),
            record.content_type.clone(),
            record.headers.clone(),
            record.body.clone(),
        );
        let plugin = route.plugin.id();
        let plugin_name = format!("{}@{}", plugin.name, plugin.version);
        let outcome = route
            .instances
            .get()
            .and_then(|mut session| session.translate(&message));
        let (code, error) = match outcome {
            Ok(Ok(events)) => {
                let fingerprint = crate::plugin::sha256_hex(&record.body);
                let expires_at = now.checked_add(route.retention).unwrap_or(Timestamp::MAX);
                let traceparent = traceparent(None, uuid::Uuid::now_v7());
                let audit = vec![replayed(json!({"dead_letter": id, "plugin": plugin_name}))];
                let mut commit = self.accepted(
                    route,
                    record,
                    events,
                    &traceparent,
                    now,
                    audit,
                    None,
                    fingerprint,
                    expires_at,
                );
                commit.resolves = Some(id.to_owned());
                let body = commit.completed.body.clone();
                return match inner.storage.commit(commit) {
                    Ok(()) => {
                        inner
                            .metrics
                            .translated
                            .get_or_create(&RouteLabel {
                                route: route.name.clone(),
                            })
                            .inc();
                        Ingested {
                            answer: Answer {
                                status: 200,
                                body,
                                problem: false,
                                replayed: false,
                                retry_after: None,
                            },
                            committed: true,
                        }
                    }
                    Err(e) => refused(storage_failure(&e)),
                };
            }
            Ok(Err(TranslateError::Transient(f))) => {
                return refused(transient(&f, json!({"code": f.code, "dead_letter": id})));
            }
            Ok(Err(TranslateError::Rejected(f))) => (f.code, f.message),
            Err(fault) => ("plugin-fault".to_owned(), fault.to_string()),
        };
        let mut updated = entry.clone();
        updated.attempts += 1;
        updated.error = error.clone();
        updated.code = code.clone();
        updated.plugin = plugin_name.clone();
        updated.plugin_sha256 = plugin.sha256.clone();
        updated.updated_at = now;
        let draft = replayed(
            json!({"dead_letter": id, "plugin": plugin_name, "code": code, "error": error}),
        );
        match inner.storage.update_dead_letter(updated, vec![draft]) {
            Ok(()) => refused(Answer::problem(
                422,
                "rejected",
                "The translator rejected the message again",
                &error,
                json!({"code": code, "dead_letter": id, "message_id": entry.message_id}),
            )),
            Err(e) => refused(storage_failure(&e)),
        }
    }

    /// Discards a dead letter for good; the audit trail records it.
    pub async fn discard(&self, id: &str) -> Answer {
        let host = self.clone();
        let owned = id.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            let id = owned;
            let inner = &host.inner;
            let entry = match inner.storage.dead_letter(&id)? {
                Some(entry) => entry,
                None => return Ok(None),
            };
            let draft = host.draft(
                &entry.message_id,
                inner.clock.now(),
                "discarded",
                json!({"dead_letter": id}),
            );
            inner.storage.discard_dead_letter(&id, vec![draft])?;
            Ok::<_, StorageError>(Some(entry))
        })
        .await;
        match result {
            Ok(Ok(Some(_))) => Answer {
                status: 204,
                body: Vec::new(),
                problem: false,
                replayed: false,
                retry_after: None,
            },
            Ok(Ok(None)) => not_found("dead letter", id),
            Ok(Err(e)) => storage_failure(&e),
            Err(_) => internal("the discard task failed"),
        }
    }

    /// The message's state folded from its audit events, at `at` or now.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn message_state(
        &self,
        id: &str,
        at: Option<Timestamp>,
    ) -> Result<Option<MessageState>, Error> {
        let events = self.inner.storage.history(id)?;
        if events.is_empty() {
            return Ok(None);
        }
        Ok(Some(audit::fold(id, &events, at)))
    }

    /// The message's audit events.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn history(&self, id: &str) -> Result<Vec<AuditEvent>, Error> {
        Ok(self.inner.storage.history(id)?)
    }

    /// Verifies every audit stream.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn verify_audit(&self) -> Result<(usize, Vec<Finding>), Error> {
        let streams = self.inner.storage.audit_streams()?;
        Ok((streams.len(), audit::verify(&streams)))
    }

    /// The routes, their plugins and sinks, as JSON.
    pub fn topology(&self) -> serde_json::Value {
        let routes: serde_json::Map<String, serde_json::Value> = self
            .inner
            .routes
            .values()
            .map(|route| {
                let id = route.plugin.id();
                (route.name.clone(), json!({
                    "plugin": {"name": id.name, "version": id.version, "sha256": id.sha256, "vendor_api_version": route.plugin.info().vendor_api_version},
                    "sinks": route.sinks,
                    "idempotency_retention_secs": route.retention.as_secs(),
                    "inflight_timeout_secs": route.inflight_timeout.as_secs(),
                    "instance_reuse": route.instances.max_uses(),
                    "retry": {
                        "max_attempts": route.retry.max_attempts,
                        "initial_backoff_ms": route.retry.initial_backoff.as_millis() as u64,
                        "max_backoff_ms": route.retry.max_backoff.as_millis() as u64,
                        "multiplier": route.retry.multiplier,
                    },
                }))
            })
            .collect();
        let sinks: serde_json::Map<String, serde_json::Value> = self
            .inner
            .config
            .sinks
            .iter()
            .map(|(name, sink)| {
                (name.clone(), match sink {
                    crate::config::SinkConfig::Http { url, .. } => json!({"type": "http", "url": url}),
                    crate::config::SinkConfig::Nats { url, stream, subject } => json!({"type": "nats", "url": url, "stream": stream, "subject": subject}),
                })
            })
            .collect();
        json!({"routes": routes, "sinks": sinks})
    }

    /// Whether the store answers and the relay runs.
    pub fn ready(&self) -> bool {
        self.inner.relay_running.load(Ordering::SeqCst) && self.inner.storage.depths().is_ok()
    }

    /// The Prometheus text exposition, with the store's depths refreshed.
    pub fn metrics_text(&self) -> String {
        self.refresh_depths();
        self.inner.metrics.render()
    }

    pub(crate) fn refresh_depths(&self) {
        if let Ok(depths) = self.inner.storage.depths() {
            let metrics = &self.inner.metrics;
            metrics
                .outbox_depth
                .set(i64::try_from(depths.outbox).unwrap_or(i64::MAX));
            metrics
                .dlq_size
                .set(i64::try_from(depths.dead_letters).unwrap_or(i64::MAX));
            let age = depths.oldest.map_or(0, |oldest| {
                (self.inner.clock.now() - oldest).as_secs().max(0)
            });
            metrics.outbox_oldest_age.set(age);
        }
    }
}

/// Checks what arrives with a message before anything else runs: the caller's idempotency
/// key (raw header bytes) and the body. `Err` is the 4xx answer. The HTTP layer and the fuzz
/// target both go through here.
///
/// # Errors
///
/// The problem answer: 400 for a bad key or an unreadable body, 415 for a body that is not
/// JSON, XML or form data.
pub fn check_message(
    content_type: Option<&str>,
    idempotency_key: Option<&[u8]>,
    body: &[u8],
) -> Result<(), Answer> {
    if let Some(key) = idempotency_key {
        check_key(key)?;
    }
    check_not_empty(body)?;
    well_formed_body(content_type, body)
}

/// A caller's `Idempotency-Key` header, checked: 1 to 255 bytes of visible ASCII.
pub(crate) fn check_key(raw: &[u8]) -> Result<String, Answer> {
    let bad =
        |detail: String| Answer::problem(400, "bad-request", "Bad request", &detail, json!({}));
    let key = std::str::from_utf8(raw)
        .map_err(|_| bad("the Idempotency-Key header is not visible ASCII".into()))?;
    valid_key(key).map_err(bad)?;
    Ok(key.to_owned())
}

pub(crate) fn check_not_empty(body: &[u8]) -> Result<(), Answer> {
    if body.is_empty() {
        return Err(Answer::problem(
            400,
            "bad-request",
            "Bad request",
            "the body is empty",
            json!({}),
        ));
    }
    Ok(())
}

/// Refuses at the door a body that no translator could read: not UTF-8 (or UTF-16 with a
/// byte order mark), or not well-formed JSON, XML or form data, by the same rules the guest
/// SDK decodes with. Nothing is stored for it: there is nothing a replay could fix.
fn well_formed(incoming: &Incoming) -> Result<(), Answer> {
    well_formed_body(incoming.content_type.as_deref(), &incoming.body)
}

fn well_formed_body(content_type: Option<&str>, body: &[u8]) -> Result<(), Answer> {
    match dragoman_guest::decode::check(body, content_type) {
        Ok(_) => Ok(()),
        Err(e) => {
            let status = if e.code() == "unsupported-format" {
                415
            } else {
                400
            };
            Err(Answer::problem(
                status,
                e.code(),
                "Unreadable body",
                e.message(),
                json!({"code": e.code()}),
            ))
        }
    }
}

/// A `transient` refusal: 503, retry in a second, nothing stored.
fn transient(failure: &crate::plugin::Failure, extra: serde_json::Value) -> Answer {
    let mut answer = Answer::problem(503, "transient", "Try again later", &failure.message, extra);
    answer.retry_after = Some(1);
    answer
}

fn refused(answer: Answer) -> Ingested {
    Ingested {
        answer,
        committed: false,
    }
}

pub(crate) fn unknown_route(route: &str) -> Answer {
    Answer::problem(
        404,
        "unknown-route",
        "Unknown route",
        &format!("no route named `{route}`"),
        json!({}),
    )
}

pub(crate) fn not_found(what: &str, id: &str) -> Answer {
    Answer::problem(
        404,
        "not-found",
        "Not found",
        &format!("no {what} `{id}`"),
        json!({}),
    )
}

pub(crate) fn internal(detail: &str) -> Answer {
    Answer::problem(500, "internal", "Internal error", detail, json!({}))
}

fn storage_failure(e: &StorageError) -> Answer {
    tracing::error!(error = %e, "storage failed");
    let mut answer = Answer::problem(
        503,
        "storage",
        "Storage unavailable",
        &e.to_string(),
        json!({}),
    );
    answer.retry_after = Some(1);
    answer
}

/// Checks a caller's idempotency key: 1 to 255 bytes of visible ASCII.
pub(crate) fn valid_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!(
            "an idempotency key has 1 to {MAX_KEY_LEN} bytes; this one has {}",
            key.len()
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("an idempotency key is visible ASCII, without spaces".into());
    }
    Ok(())
}

/// The caller's trace context when it is valid, else a new one whose trace id is the message id.
fn traceparent(given: Option<&str>, message_id: uuid::Uuid) -> String {
    let valid = |t: &str| {
        let parts: Vec<&str> = t.split('-').collect();
        parts.len() == 4
            && parts[0] == "00"
            && parts[1].len() == 32
            && parts[2].len() == 16
            && parts[3].len() == 2
            && parts.iter().all(|p| {
                p.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            })
            && parts[1] != "00000000000000000000000000000000"
    };
    let span: u64 = rand::random::<u64>() | 1;
    match given.filter(|t| valid(t)) {
        Some(t) => format!("00-{}-{span:016x}-01", &t[3..35]),
        None => format!("00-{}-{span:016x}-01", message_id.simple()),
    }
}

/// The plugin's view of a message: the headers as the contract's records.
fn vendor_message(
    id: String,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> VendorMessage {
    VendorMessage {
        id,
        content_type,
        headers: headers
            .into_iter()
            .map(|(name, value)| crate::plugin::Header { name, value })
            .collect(),
        body,
    }
}
