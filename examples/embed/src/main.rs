//! An order service that embeds Dragoman.
//!
//! The service is an ordinary axum application with routes of its own (`POST /orders`, where
//! the ERP pushes orders, and `GET /health`). Dragoman lives inside it:
//!
//! - its HTTP API is mounted under `/integrations/` (`/integrations/v1/routes/...`,
//!   `/integrations/v1/dlq`, `/integrations/healthz`, ...);
//! - `POST /orders` calls [`Host::ingest`] and matches on the typed outcome to answer in the
//!   service's own words;
//! - the host shares the service's tokio runtime, its tracing subscriber (installed here,
//!   once; the library installs none) and its graceful shutdown: on SIGTERM or ctrl-c the
//!   server stops accepting and finishes its requests, then the relay finishes its pass and
//!   the store is flushed.
//!
//! Run: `cargo run -p embed -- --config examples/embed/dragoman.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use clap::Parser;
use dragoman::config::Config;
use dragoman::outcome::{Settled, Unavailable};
use dragoman::{Host, Incoming, Ingested};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// An order service with Dragoman inside.
#[derive(Debug, Parser)]
struct Args {
    /// Dragoman's configuration (its `listen` is not used: the service owns its socket).
    #[arg(long)]
    config: PathBuf,
    /// Where the service listens.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// The Dragoman route that `POST /orders` ingests on.
    #[arg(long, default_value = "orders")]
    route: String,
}

#[derive(Clone)]
struct App {
    host: Host,
    route: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = Config::from_file(&args.config)?;
    let host = Host::builder().config(config).build()?;
    let app = App {
        host: host.clone(),
        route: args.route,
    };
    let router = Router::new()
        .route("/orders", post(receive_order))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(app)
        .nest_service("/integrations", host.api());

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("listening on http://{}", listener.local_addr()?);

    let stop = CancellationToken::new();
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown(stop.clone()));
    // The server stops first (no new requests, in-flight ones finish); only then is the
    // relay told to stop, so nothing a request committed is left without a relay pass.
    let relay_stop = CancellationToken::new();
    let serving = async {
        let served = server.await;
        relay_stop.cancel();
        served
    };
    let (served, ran) = tokio::join!(serving, host.run(relay_stop.clone().cancelled_owned()));
    served.context("the server failed")?;
    ran.context("the host did not shut down cleanly")?;
    Ok(())
}

/// `POST /orders`: the service's own door for the ERP's pushes. The body goes to Dragoman as
/// it came; the answer is the service's, chosen by matching on the outcome.
async fn receive_order(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let incoming = Incoming {
        content_type: text(header::CONTENT_TYPE),
        idempotency_key: text(header::HeaderName::from_static("idempotency-key")),
        body: body.to_vec(),
        ..Incoming::default()
    };
    match app.host.ingest(&app.route, incoming).await {
        Ingested::Accepted(accepted) => (
            StatusCode::CREATED,
            Json(json!({"order": "accepted", "message_id": accepted.message_id, "events": accepted.events})),
        )
            .into_response(),
        Ingested::Duplicate(Settled::Accepted(earlier)) => (
            StatusCode::OK,
            Json(json!({"order": "already accepted", "message_id": earlier.message_id, "events": earlier.events})),
        )
            .into_response(),
        Ingested::Rejected(rejected) | Ingested::Duplicate(Settled::Rejected(rejected)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"order": "refused", "reason": rejected.error, "code": rejected.code, "dead_letter": rejected.dead_letter})),
        )
            .into_response(),
        Ingested::InFlight(_) | Ingested::Transient(_) | Ingested::Unavailable(Unavailable::Storage(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"order": "try again shortly"})),
        )
            .into_response(),
        Ingested::KeyReused { idempotency_key, .. } => (
            StatusCode::CONFLICT,
            Json(json!({"order": "refused", "reason": format!("key {idempotency_key} belongs to another order")})),
        )
            .into_response(),
        Ingested::Refused(refusal) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"order": "unreadable", "reason": format!("{refusal:?}")})),
        )
            .into_response(),
        other => {
            tracing::error!(?other, "ingest failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Resolves on SIGTERM or ctrl-c (or when `stop` is cancelled).
async fn shutdown(stop: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
        () = stop.cancelled() => {}
    }
    tracing::info!("shutting down");
}
