//! A real host serving the API on a loopback port for a benchmark, stopped cleanly at its end:
//! what the ingest, swap and bulkhead benchmarks share.

use dragoman::Host;
use dragoman::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A host serving on 127.0.0.1.
pub(crate) struct Serving {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), dragoman::Error>>,
}

impl Serving {
    /// Builds a host from `config` and serves it on a free loopback port.
    pub(crate) async fn start(config: Config) -> Self {
        let host = Host::builder()
            .config(config)
            .build()
            .expect("the host builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            host.serve(listener, async {
                let _ = stopped.await;
            })
            .await
        });
        Self { base, stop, server }
    }

    /// Shuts the host down in order and waits until it has.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.server
            .await
            .expect("the server task")
            .expect("a clean shutdown");
    }
}
