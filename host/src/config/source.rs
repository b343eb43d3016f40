//! `[routes.NAME.source]`: where a route takes messages from besides its HTTP door. Today a
//! NATS JetStream stream, read by a durable pull consumer with explicit acks.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawSource {
    Jetstream {
        url: super::secret::RawSecret,
        stream: String,
        subject: String,
        durable: String,
        batch: Option<usize>,
        max_ack_pending: Option<i64>,
        max_deliver: Option<u32>,
        ack_wait_secs: Option<u64>,
    },
}

/// A route's source of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceConfig {
    /// A NATS JetStream stream.
    JetStream(JetStreamSource),
}

/// A durable pull consumer on a JetStream stream (created if absent, with these settings, or
/// bound to an existing one whose settings are checked at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamSource {
    /// The server, `nats://host:port`.
    pub url: String,
    /// The stream (created if absent, holding `subject`).
    pub stream: String,
    /// The subject the consumer filters on (wildcards allowed).
    pub subject: String,
    /// The durable consumer's name.
    pub durable: String,
    /// Messages asked for at once; the host works on up to two batches at once.
    pub batch: usize,
    /// Messages delivered and not yet acknowledged that the server allows the consumer.
    pub max_ack_pending: i64,
    /// Deliveries of one message before the host dead-letters it. The host counts them
    /// itself (the consumer is made with no limit of its own), so that a message whose last
    /// delivery finds the store down is tried again, never dropped by the server.
    pub max_deliver: u32,
    /// How long the server waits for an acknowledgement before it delivers again.
    pub ack_wait: Duration,
}

/// The most messages asked for at once.
pub const MAX_BATCH: usize = 1_024;

/// Messages asked for at once unless the route says: two batches in hand keep the commits
/// full (`benches/source.rs` measured 128 ahead of 64) and fit the default `max_waiting`.
const DEFAULT_BATCH: usize = 128;

impl JetStreamSource {
    /// The most messages the host holds unanswered: two batches, so that the next is
    /// fetched while the last is committed.
    pub fn in_hand(&self) -> usize {
        self.batch * 2
    }
}

impl RawSource {
    /// Checks the table of route `route`, whose bulkhead admits `admitted` messages at once
    /// (running and waiting).
    pub(super) fn check(
        self,
        route: &str,
        admitted: usize,
        base: &std::path::Path,
    ) -> Result<SourceConfig, String> {
        let Self::Jetstream {
            url,
            stream,
            subject,
            durable,
            batch,
            max_ack_pending,
            max_deliver,
            ack_wait_secs,
        } = self;
        let at = format!("routes.{route}.source");
        let url = url.value(base, &format!("{at}.url"))?;
        // Stream and consumer names become subject tokens: no spaces, dots or wildcards.
        for (what, name) in [("stream", &stream), ("durable", &durable)] {
            if !super::valid_name(name) {
                return Err(format!(
                    "{at}.{what}: `{name}` is not 1 to 64 letters, digits, `-` and `_`"
                ));
            }
        }
        if subject.is_empty() || subject.contains(char::is_whitespace) {
            return Err(format!(
                "{at}.subject: `{subject}` is not a subject (tokens separated by dots, no spaces)"
            ));
        }
        if !url.starts_with("nats://") {
            return Err(format!("{at}.url: `{url}` is not a `nats://` address"));
        }
        let batch = batch.unwrap_or(DEFAULT_BATCH);
        if !(1..=MAX_BATCH).contains(&batch) {
            return Err(format!("{at}.batch is 1 to {MAX_BATCH}; {batch} was given"));
        }
        let max_ack_pending = max_ack_pending.unwrap_or(1_000);
        if max_ack_pending < i64::try_from(batch * 2).unwrap_or(i64::MAX) {
            return Err(format!(
                "{at}.max_ack_pending ({max_ack_pending}) is less than two batches ({}): the \
                 consumer could never hold what the host works on at once",
                batch * 2
            ));
        }
        if batch * 2 > admitted {
            return Err(format!(
                "{at}: two batches ({}) are more than the route admits at once ({admitted}, its \
                 max_concurrency and max_waiting): the rest would be refused as busy and \
                 delivered again; lower batch or raise max_waiting",
                batch * 2
            ));
        }
        let max_deliver = max_deliver.unwrap_or(10);
        if !(1..=1_000).contains(&max_deliver) {
            return Err(format!(
                "{at}.max_deliver is 1 to 1000; {max_deliver} was given"
            ));
        }
        let ack_wait = Duration::from_secs(ack_wait_secs.unwrap_or(30));
        if !(Duration::from_secs(1)..=Duration::from_secs(3_600)).contains(&ack_wait) {
            return Err(format!("{at}.ack_wait_secs is 1 to 3600"));
        }
        Ok(SourceConfig::JetStream(JetStreamSource {
            url,
            stream,
            subject,
            durable,
            batch,
            max_ack_pending,
            max_deliver,
            ack_wait,
        }))
    }
}
