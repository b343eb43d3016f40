//! The HTTP API on hyper 1: the only module that knows hyper's server and HTTP statuses.
//!
//! - `server.rs`: the accept loop and graceful shutdown;
//! - `routes.rs`: which request goes to which operation, and the admin token;
//! - `body.rs`: reading a message request;
//! - `problem.rs`: outcomes to statuses and RFC 9457 problems, in one place;
//! - `console.rs`: the operator's console at `/console`, pages over the same operations.
//!
//! [`Api`] is also how an embedding service mounts the API into its own router: it is a
//! `tower` service over any request body of `Bytes`.

mod body;
mod breakers;
mod commands;
mod console;
mod entities;
mod plugins;
mod problem;
mod replay;
mod routes;
mod server;
mod topology;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;

pub use problem::refusal_status;
pub(crate) use server::serve;

use crate::config::{Config, SinkConfig};
use crate::pipeline::Pipeline;
use crate::relay::Running;

/// Headers beyond this many get 431 from the parser.
pub const MAX_HEADERS: usize = 100;

/// The HTTP API of one host: answers requests with the host's operations. Cheap to clone;
/// made by [`crate::Host::api`].
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    pipeline: Pipeline,
    relay: Running,
    sinks: BTreeMap<String, SinkConfig>,
    admin_token: Option<crate::config::Secret>,
    max_body: usize,
    body_timeout: std::time::Duration,
    /// Message requests being handled (reading, waiting for a worker, running): a permit
    /// each, as many as there are workers plus `max_waiting`.
    admission: Arc<tokio::sync::Semaphore>,
    /// Every circuit breaker (sinks and vendors), for the operator's view and actions.
    breakers: crate::circuits::Circuits,
    /// The entity types' projectors, for entity state.
    projections: crate::projection::Projections,
    /// Releases the keys a sink holds in backoff.
    release: crate::relay::Release,
    /// Each route's credential check.
    doors: crate::door::Doors,
    /// The routes' broker sources, shown with their state.
    sources: crate::source::Sources,
    /// The console's sessions and samples.
    console: console::Console,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("max_body", &self.inner.max_body)
            .finish_non_exhaustive()
    }
}

impl Api {
    #[expect(
        clippy::too_many_arguments,
        reason = "the composition root hands each part over once, by name"
    )]
    pub(crate) fn new(
        pipeline: Pipeline,
        relay: Running,
        config: &Config,
        breakers: crate::circuits::Circuits,
        projections: crate::projection::Projections,
        release: crate::relay::Release,
        doors: crate::door::Doors,
        sources: crate::source::Sources,
    ) -> Self {
        let admission = pipeline.workers() + config.http.max_waiting;
        Self {
            inner: Arc::new(Inner {
                pipeline,
                relay,
                sinks: config.sinks.clone(),
                admin_token: config.admin_token.clone(),
                max_body: config.max_body,
                body_timeout: config.http.body_timeout,
                admission: Arc::new(tokio::sync::Semaphore::new(admission)),
                breakers,
                projections,
                release,
                doors,
                sources,
                console: console::Console::default(),
            }),
        }
    }

    /// Answers one request. The path is read as the API's own (`/v1/...`, `/healthz`): a
    /// service that mounts the API under a prefix strips it first, as axum's `nest_service`
    /// does.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: std::fmt::Display + Send,
    {
        routes::handle(&self.inner, request).await
    }
}

impl<B> tower_service::Service<Request<B>> for Api
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move { Ok(api.handle(request).await) })
    }
}
