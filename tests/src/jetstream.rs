//! A JetStream stream of its own for a test, on the local server ([`crate::nats_url`]):
//! created with a unique name, published to, its consumers read, and deleted at the end.

use std::time::Duration;

use async_nats::jetstream;

/// The shortest duplicate window the server takes.
pub const DUPLICATE_WINDOW: Duration = Duration::from_millis(100);

/// A message to publish: its headers (name, value) and its body.
pub type Message = (Vec<(String, String)>, Vec<u8>);

/// A stream that only this test uses.
#[derive(Debug)]
pub struct TestStream {
    runtime: tokio::runtime::Runtime,
    context: jetstream::Context,
    /// Its name.
    pub name: String,
    /// The subject it holds (`NAME.in`).
    pub subject: String,
}

/// A consumer's counts as the server keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerCounts {
    /// Messages not yet delivered.
    pub pending: u64,
    /// Delivered and not yet acknowledged.
    pub ack_pending: usize,
    /// Delivered more than once and not yet acknowledged.
    pub redelivered: usize,
}

impl TestStream {
    /// Creates the stream, named after `prefix` and the time. Its duplicate window is the
    /// shortest the server keeps ([`DUPLICATE_WINDOW`]), so a message published again with
    /// one `Nats-Msg-Id` after it reaches the consumer twice, as it does in production once
    /// the window has passed.
    pub fn create(prefix: &str) -> Self {
        // A worker of its own, so the connection answers the server's pings between calls.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        let name = format!("{prefix}_{nanos}");
        let subject = format!("{name}.in");
        let context = runtime.block_on(async {
            let client = async_nats::connect(crate::nats_url())
                .await
                .expect("the local NATS server");
            let context = jetstream::new(client);
            context
                .create_stream(jetstream::stream::Config {
                    name: name.clone(),
                    subjects: vec![subject.clone()],
                    duplicate_window: DUPLICATE_WINDOW,
                    ..Default::default()
                })
                .await
                .expect("a stream");
            context
        });
        Self {
            runtime,
            context,
            name,
            subject,
        }
    }

    /// A `[routes.ROUTE.source]` table reading this stream with `durable` and `extra` keys.
    pub fn source_table(&self, route: &str, durable: &str, extra: &str) -> String {
        format!(
            "\n[routes.{route}.source]\ntype = \"jetstream\"\nurl = \"{}\"\nstream = \"{}\"\n\
             subject = \"{}\"\ndurable = \"{durable}\"\n{extra}\n",
            crate::nats_url(),
            self.name,
            self.subject
        )
    }

    /// Publishes `body` with `headers` and waits for the stream's acknowledgement.
    pub fn publish(&self, headers: &[(&str, &str)], body: &[u8]) {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, *value);
        }
        self.runtime.block_on(async {
            self.context
                .publish_with_headers(self.subject.clone(), map, body.to_vec().into())
                .await
                .expect("published")
                .await
                .expect("acknowledged by the stream");
        });
    }

    /// Publishes many at once, each acknowledged by the stream before this returns.
    pub fn publish_all(&self, messages: &[Message]) {
        self.runtime.block_on(async {
            let mut acks = Vec::with_capacity(messages.len());
            for (headers, body) in messages {
                let mut map = async_nats::HeaderMap::new();
                for (name, value) in headers {
                    map.append(name.as_str(), value.as_str());
                }
                acks.push(
                    self.context
                        .publish_with_headers(self.subject.clone(), map, body.clone().into())
                        .await
                        .expect("published"),
                );
            }
            for ack in acks {
                ack.await.expect("acknowledged by the stream");
            }
        });
    }

    /// The messages the stream holds.
    pub fn messages(&self) -> u64 {
        self.runtime.block_on(async {
            let mut stream = self
                .context
                .get_stream(&self.name)
                .await
                .expect("the stream");
            stream.info().await.expect("its info").state.messages
        })
    }

    /// The consumer `durable`'s counts, if it exists.
    pub fn consumer(&self, durable: &str) -> Option<ConsumerCounts> {
        self.runtime.block_on(async {
            let stream = self.context.get_stream(&self.name).await.ok()?;
            let info = stream.consumer_info(durable).await.ok()?;
            Some(ConsumerCounts {
                pending: info.num_pending,
                ack_pending: info.num_ack_pending,
                redelivered: info.num_redelivered,
            })
        })
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let _ = self
            .runtime
            .block_on(self.context.delete_stream(&self.name));
    }
}
