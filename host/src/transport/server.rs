//! The accept loop: one hyper HTTP/1 connection per socket, bounded by design, until the
//! shutdown future resolves; then in-flight requests get a bounded time to finish.
//!
//! No client can exhaust the host by holding connections:
//! - at most `max_connections` are open, kept below the process's file limit; a connection
//!   beyond it takes the place of the longest idle one (open, but with no request being
//!   served), so a client holding idle connections cannot lock others out; when every
//!   connection is serving a request, the new one is closed at once;
//! - a request head must arrive within `header_timeout` (hyper's timer, which also runs
//!   while a kept-alive connection waits for its next request); the body's time is bounded in
//!   `routes.rs`;
//! - accept errors are logged at most once every few seconds, with how many were not.

mod connections;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use self::connections::Connections;
use super::{Api, MAX_HEADERS};
use crate::config::HttpConfig;

/// How long in-flight requests may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(30);
/// At most one accept error is logged in this long.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Accepts connections until `shutdown` resolves, then lets in-flight requests finish.
pub(crate) async fn serve(
    api: Api,
    listener: TcpListener,
    limits: &HttpConfig,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Connections::new(connections::within_file_limit(
        limits.max_connections,
    )));
    let mut accept_errors = Throttle::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_errors.note(&e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Some(connection) = connections.admit() else {
                    // Every connection is serving a request: this one is closed unread.
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (api, serving) = (api.clone(), connection.clone());
                let service = hyper::service::service_fn(move |request| {
                    let (api, serving) = (api.clone(), serving.clone());
                    async move {
                        let _busy = serving.busy();
                        Ok::<_, std::convert::Infallible>(api.handle(request).await)
                    }
                });
                let http = hyper::server::conn::http1::Builder::new()
                    .max_headers(MAX_HEADERS)
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                let http = graceful.watch(http);
                let connections = connections.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        ended = http => {
                            if let Err(e) = ended {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        () = connection.evicted() => {
                            tracing::debug!("closed an idle connection to make room for a new one");
                        }
                    }
                    connections.remove(&connection);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {} s; closing",
            DRAIN.as_secs()
        );
    }
}

/// Logs accept errors at most once every [`LOG_EVERY`], with how many went unlogged: a
/// flood of them (out of file handles) must not flood the log too.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    fn note(&mut self, error: &std::io::Error) {
        if self.last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(%error, unlogged = self.unlogged, "accept failed");
        self.last = Some(Instant::now());
        self.unlogged = 0;
    }
}
