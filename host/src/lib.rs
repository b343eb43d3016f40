//! Dragoman runs vendor-specific anti-corruption translators as sandboxed WebAssembly
//! components.
//!
//! A translator plugin turns a vendor's model into ours and back; this crate loads such
//! plugins, runs each message in a fresh sandbox under limits, and checks plugins against
//! their contract fixtures.
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
//! # Layout
//! - [`Host`]: routes, ingest, the dead letter channel, the audit trail; `serve` runs the
//!   HTTP API and the outbox relay.
//! - [`config`]: the TOML configuration.
//! - [`storage`]: the storage trait and its records; [`db`]: the sled implementation.
//! - [`audit`]: the hash chain, its verification and the fold of a message's state.
//! - [`plugin`]: the wasmtime runtime, loading, limits, faults and calls.
//! - [`fixtures`]: contract fixtures and the readable diff of a mismatch.
//! - [`clock`]: the injectable clock.
//! - [`Error`]: the crate's one error type.
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub)]

pub mod audit;
mod bindings;
pub mod clock;
pub mod config;
pub mod db;
mod error;
pub mod fixtures;
mod host;
mod metrics;
pub mod plugin;
mod relay;
mod sink;
pub mod storage;
mod transport;

pub use error::{Error, ErrorKind};
pub use host::{Answer, Host, HostBuilder, Incoming, MAX_KEY_LEN, check_message};
pub use transport::{MAX_HEADERS, handle};
