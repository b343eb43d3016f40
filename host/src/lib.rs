//! Dragoman runs vendor-specific anti-corruption translators as sandboxed WebAssembly
//! components.
//!
//! A translator plugin turns a vendor's model into ours and back; this crate loads such
//! plugins, runs each message in a fresh sandbox under limits, and surrounds them with a
//! durable pipeline: idempotent ingest, a transactional outbox with a relay to sinks, a dead
//! letter channel and a hash-chained audit trail; and it sends domain commands to vendor APIs
//! through circuit breakers, degrading as each route says while a vendor is down.
//!
//! A plugin on its own:
//!
//! ```no_run
//! use std::sync::Arc;
//! use dragoman::plugin::{PluginConfig, Runtime, VendorMessage};
//!
//! let runtime = Runtime::builder().cache_dir("/var/cache/dragoman").build()?;
//! let plugin = runtime.load_file("acme_erp_orders.wasm")?;
//! let message = VendorMessage {
//!     id: "m-1".into(),
//!     content_type: Some("application/json".into()),
//!     headers: vec![],
//!     body: br#"{"ord_id": "A-1", "ord_status": "O", "line_items": []}"#.to_vec(),
//! };
//! match plugin.translate(&message, Arc::new(PluginConfig::new()))? {
//!     Ok(events) => println!("{} events", events.len()),
//!     Err(refusal) => println!("refused: {refusal:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Embedded in a service: ingest from its own code and match on the outcome, mount the HTTP
//! API in its own router (here under `/integrations`, with axum), and run the relay beside
//! its server on the same runtime, with the same shutdown:
//!
//! ```no_run
//! use dragoman::config::Config;
//! use dragoman::{Host, Incoming, Ingested};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_file("dragoman.toml".as_ref())?;
//! let host = Host::builder().config(config).build()?;
//!
//! let incoming = Incoming {
//!     content_type: Some("application/json".into()),
//!     body: br#"{"ord_id": "A-1", "ord_status": "O", "line_items": []}"#.to_vec(),
//!     ..Incoming::default()
//! };
//! match host.ingest("erp-orders", incoming).await {
//!     Ingested::Accepted(accepted) => println!("events {:?}", accepted.events),
//!     Ingested::Duplicate(earlier) => println!("seen before as {}", earlier.message_id()),
//!     Ingested::Rejected(rejected) => println!("dead-lettered: {}", rejected.error),
//!     other => println!("not now: {other:?}"),
//! }
//!
//! let app = axum::Router::new().nest_service("/integrations", host.api());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let stop = tokio_util::sync::CancellationToken::new();
//! let server = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
//! let (served, ran) = tokio::join!(
//!     async { let served = server.await; stop.cancel(); served },
//!     host.run(stop.clone().cancelled_owned()),
//! );
//! served?;
//! ran?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`Host`]: the composition root; `serve` runs the HTTP API and the outbox relay, `run`
//!   only the relay, for a service that serves [`Host::api`] itself.
//! - [`outcome`]: what the operations answer, as values to match on.
//! - [`transport`]: the HTTP API, the one place that knows statuses and problem details.
//! - [`config`]: the TOML configuration.
//! - [`storage`]: the storage trait and its records, [`storage::Db`], the sled backend, and
//!   [`storage::Postgres`], the PostgreSQL backend several hosts can share.
//! - [`audit`]: the hash chain, its verification and the fold of a message's state.
//! - [`checkpoint`]: signed checkpoints of every chain head, their keys and note format.
//! - [`plugin`]: the wasmtime runtime, loading, limits, faults, calls and the instance pool.
//! - [`fixtures`]: contract fixtures and the readable diff of a mismatch.
//! - [`breaker`]: the circuit breaker, usable on its own; every sink and every vendor has
//!   one.
//! - [`vendor`]: calls to vendor APIs for outbound commands ([`Host::command`]).
//! - [`clock`]: the injectable clock.
//! - [`Error`]: the crate's one error type.
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub)]

mod anchor;
pub mod archive;
pub mod audit;
mod bindings;
pub mod breaker;
mod bulkhead;
mod chain;
pub mod checkpoint;
mod circuits;
pub mod clock;
pub mod config;
mod delivery;
mod door;
pub mod entity;
mod error;
mod evict;
pub mod fixtures;
mod follow;
mod hex;
mod host;
pub mod outcome;
mod percent;
mod pipeline;
pub mod plugin;
pub mod projection;
pub mod registry;
mod relay;
mod retention;
mod source;
pub mod storage;
mod telemetry;
pub mod tls;
pub mod topology;
mod trace;
pub mod transport;
pub mod vendor;
mod watched;
mod webhooks;

pub use delivery::DeliveryError;
pub use error::{Error, ErrorKind};
pub use host::{Host, HostBuilder};
pub use outcome::{Commanded, Ingested, Replayed, Translated};
pub use pipeline::{Incoming, MAX_BATCH, MAX_KEY_LEN, ReplayFilter, check_message};
