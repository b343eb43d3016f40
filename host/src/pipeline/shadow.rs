//! Shadow runs: a candidate version translates a route's live messages beside the active
//! version, on a thread of its own; its output is compared with the active version's and
//! never committed. Differences are counted and the latest are kept with both outputs, so
//! an operator sees where a new version disagrees before activating it.
//!
//! The live path only hands the message over: a clone into a bounded queue, never waited
//! on. When the queue is full the message is not shadowed, and counted as dropped. The
//! shadow lives in memory until stopped (or replaced, or the host stops).

use std::collections::VecDeque;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::Pipeline;
use super::routes::{Route, Version};
use crate::outcome::Activated;
use crate::plugin::{Fault, TranslateError, VendorMessage};
use crate::storage::Producer;

/// How many messages may wait for the shadow thread.
const QUEUE: usize = 256;
/// How many of the latest differences are kept with both outputs.
const SAMPLES: usize = 20;

/// What a version made of a message, as the report shows it.
pub(crate) type Output = Value;

/// A candidate translating a route's messages in shadow.
#[derive(Debug)]
pub(crate) struct Shadow {
    /// The candidate.
    pub(crate) candidate: Producer,
    queue: SyncSender<Job>,
    report: Arc<Mutex<Report>>,
}

/// One message to shadow, with what the active version made of it.
struct Job {
    message: VendorMessage,
    active: Producer,
    output: Output,
}

/// What the shadow found so far.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// The candidate.
    pub(crate) candidate: Producer,
    /// Since when it runs.
    pub(crate) since: Timestamp,
    /// Messages translated by both.
    pub(crate) compared: u64,
    /// Of those, with the same output.
    pub(crate) same: u64,
    /// Of those, with another output.
    pub(crate) different: u64,
    /// Messages not shadowed because the queue was full.
    pub(crate) dropped: u64,
    /// The latest differences, oldest first.
    pub(crate) samples: VecDeque<Sample>,
}

/// A message the two versions disagree on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    pub(crate) message_id: String,
    pub(crate) active: Producer,
    pub(crate) active_output: Output,
    pub(crate) candidate_output: Output,
}

impl Shadow {
    /// Starts shadowing with `candidate` (a version with the route's instances) on a thread of
    /// its own, which ends when the shadow is dropped.
    pub(crate) fn start(candidate: Arc<Version>, now: Timestamp) -> std::io::Result<Self> {
        let (queue, jobs) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let report = Arc::new(Mutex::new(Report {
            candidate: candidate.producer.clone(),
            since: now,
            compared: 0,
            same: 0,
            different: 0,
            dropped: 0,
            samples: VecDeque::new(),
        }));
        let shared = report.clone();
        let producer = candidate.producer.clone();
        std::thread::Builder::new()
            .name("dragoman-shadow".into())
            .spawn(move || {
                for job in jobs {
                    let output = translate(&candidate, &job.message);
                    lock(&shared).count(job, output);
                }
            })?;
        Ok(Self {
            candidate: producer,
            queue,
            report,
        })
    }

    /// Hands a message and the active version's output to the shadow; never waits.
    pub(crate) fn offer(&self, message: &VendorMessage, active: &Producer, output: Output) {
        let job = Job {
            message: message.clone(),
            active: active.clone(),
            output,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.queue.try_send(job)
        {
            lock(&self.report).dropped += 1;
        }
    }

    /// The report now.
    pub(crate) fn report(&self) -> Report {
        lock(&self.report).clone()
    }
}

impl Report {
    fn count(&mut self, job: Job, candidate_output: Output) {
        self.compared += 1;
        if candidate_output == job.output {
            self.same += 1;
            return;
        }
        self.different += 1;
        self.samples.push_back(Sample {
            message_id: job.message.id,
            active: job.active,
            active_output: job.output,
            candidate_output,
        });
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
    }
}

fn lock(report: &Mutex<Report>) -> std::sync::MutexGuard<'_, Report> {
    report
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The candidate's translation of `message`, as the report shows it.
fn translate(candidate: &Version, message: &VendorMessage) -> Output {
    let translation = candidate
        .instances
        .get()
        .and_then(|mut session| session.translate(message));
    output(&translation)
}

/// A translation as the report shows it: the events, or the refusal's kind and code, or
/// the fault's kind.
pub(crate) fn output(
    translation: &Result<Result<Vec<crate::plugin::DomainEvent>, TranslateError>, Fault>,
) -> Output {
    match translation {
        Ok(Ok(events)) => json!({ "events": events }),
        Ok(Err(TranslateError::Rejected(f))) => {
            json!({"refused": {"kind": "rejected", "code": f.code, "message": f.message}})
        }
        Ok(Err(TranslateError::Transient(f))) => {
            json!({"refused": {"kind": "transient", "code": f.code, "message": f.message}})
        }
        Err(fault) => json!({ "fault": format!("{:?}", fault.kind()) }),
    }
}

impl Pipeline {
    /// Starts a shadow of `plugin` on each of `routes` (replacing any); the routes' names.
    pub(super) fn start_shadows(
        &self,
        routes: &[Arc<Route>],
        plugin: &crate::plugin::Plugin,
        loaded: crate::plugin::Provenance,
    ) -> Vec<String> {
        let mut started = Vec::new();
        for route in routes {
            let candidate = route.candidate(plugin.clone(), loaded);
            let shadow = match Shadow::start(candidate, self.core.clock.now()) {
                Ok(shadow) => shadow,
                Err(e) => {
                    tracing::error!(route = route.name, error = %e, "cannot start a shadow thread");
                    continue;
                }
            };
            let to = shadow.candidate.clone();
            route.set_shadow(Some(Arc::new(shadow)));
            self.shadow_event(route, "shadow_started", &to);
            started.push(route.name.clone());
        }
        started
    }

    /// Stops the shadow of plugin `name` on every route that serves it.
    pub(crate) async fn stop_shadow(&self, name: &str) -> Activated {
        let routes = self.serving(name);
        if routes.is_empty() {
            return Activated::UnknownPlugin {
                name: name.to_owned(),
            };
        }
        let mut stopped = Vec::new();
        for route in &routes {
            if let Some(shadow) = route.set_shadow(None) {
                self.shadow_event(route, "shadow_stopped", &shadow.candidate);
                stopped.push(route.name.clone());
            }
        }
        Activated::ShadowStopped {
            name: name.to_owned(),
            routes: stopped,
        }
    }

    /// The shadow reports of plugin `name`, by route; `None` when no route serves it.
    pub(crate) fn shadow_reports(&self, name: &str) -> Option<Value> {
        let routes = self.serving(name);
        if routes.is_empty() {
            return None;
        }
        let reports: serde_json::Map<String, Value> = routes
            .iter()
            .map(|route| {
                let report = route.shadow().map(|s| json!(s.report()));
                (route.name.clone(), report.unwrap_or(Value::Null))
            })
            .collect();
        Some(Value::Object(reports))
    }

    fn shadow_event(&self, route: &Route, kind: &str, candidate: &Producer) {
        let active = route.version().producer.clone();
        self.audit(
            &super::activate::route_stream(&route.name),
            kind,
            json!({
                "from": active.label(), "from_sha256": active.sha256,
                "to": candidate.label(), "to_sha256": candidate.sha256,
            }),
        );
        tracing::warn!(
            route = route.name,
            candidate = candidate.label(),
            kind,
            "shadow"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer(version: &str) -> Producer {
        Producer {
            name: "p".into(),
            version: version.into(),
            sha256: format!("sha-{version}"),
        }
    }

    fn message(id: &str) -> VendorMessage {
        VendorMessage {
            id: id.into(),
            content_type: None,
            headers: Vec::new(),
            body: b"{}".to_vec(),
        }
    }

    /// A shadow whose thread is stuck: its queue holds `room` jobs and nothing drains it.
    fn stuck(room: usize) -> (Shadow, std::sync::mpsc::Receiver<Job>) {
        let (queue, jobs) = std::sync::mpsc::sync_channel(room);
        let report = Report {
            candidate: producer("2"),
            since: Timestamp::UNIX_EPOCH,
            compared: 0,
            same: 0,
            different: 0,
            dropped: 0,
            samples: VecDeque::new(),
        };
        let shadow = Shadow {
            candidate: producer("2"),
            queue,
            report: Arc::new(Mutex::new(report)),
        };
        (shadow, jobs)
    }

    #[test]
    fn a_full_queue_drops_the_message_and_counts_it_without_waiting() {
        let (shadow, jobs) = stuck(2);
        for n in 0..5 {
            shadow.offer(
                &message(&format!("m-{n}")),
                &producer("1"),
                json!({"events": []}),
            );
        }
        assert_eq!(shadow.report().dropped, 3);
        let queued: Vec<String> = jobs.try_iter().map(|job| job.message.id).collect();
        assert_eq!(queued, ["m-0", "m-1"], "the first ones wait, in order");
    }

    #[test]
    fn differences_are_counted_and_the_latest_kept_with_both_outputs() {
        let (shadow, jobs) = stuck(64);
        for n in 0..30 {
            shadow.offer(
                &message(&format!("m-{n}")),
                &producer("1"),
                json!({ "n": n }),
            );
        }
        let mut report = shadow.report();
        for (n, job) in jobs.try_iter().enumerate() {
            // The candidate agrees on the first five only.
            let candidate = if n < 5 {
                json!({ "n": n })
            } else {
                json!({ "other": n })
            };
            report.count(job, candidate);
        }
        assert_eq!(
            (report.compared, report.same, report.different),
            (30, 5, 25)
        );
        assert_eq!(report.samples.len(), SAMPLES);
        let first = &report.samples[0];
        assert_eq!(first.message_id, "m-10", "the oldest kept of the latest 20");
        assert_eq!(
            (&first.active_output, &first.candidate_output),
            (&json!({"n": 10}), &json!({"other": 10}))
        );
    }
}
