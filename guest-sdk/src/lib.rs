//! The guest SDK for Dragoman translator plugins written in Rust.
//!
//! A translator turns a vendor's model into ours. With this crate a plugin is a type that
//! implements [`Plugin`] and [`Inbound`] (and/or [`Outbound`]), exported with one macro:
//!
//! ```no_run
//! use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo};
//!
//! struct Orders;
//!
//! impl Plugin for Orders {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("acme-orders", env!("CARGO_PKG_VERSION"), "2024-01")
//!     }
//! }
//!
//! impl Inbound for Orders {
//!     fn translate(message: &Message) -> Result<Vec<Event>, Error> {
//!         let order: serde_json::Value = message.parse()?;
//!         let id = order["id"].as_str().ok_or_else(|| Error::missing_field("id"))?;
//!         Ok(vec![Event::json("order.created.v1", id, &order)?])
//!     }
//! }
//!
//! dragoman_guest::export!(Orders: inbound);
//! ```
//!
//! # Layout
//! - [`message`]: the vendor message and body decoding that looks at the bytes, not the
//!   declared content type ([`decode`]).
//! - [`event`]: domain events and their builder.
//! - [`error`]: `rejected` and `transient` errors with stable codes.
//! - [`money`]: decimal amounts parsed without floating point, and integer money.
//! - [`de`]: serde helpers for the loose typing of XML and form bodies.
//! - [`log`] and [`config`]: the host imports.
//! - [`outbound`]: commands, vendor requests and responses.
//! - [`projector`]: the other contract, a fold of an entity's events into its state
//!   ([`export_projector!`]).
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub)]

pub mod config;
pub mod de;
pub mod decode;
pub mod error;
pub mod event;
pub mod log;
pub mod message;
pub mod money;
pub mod outbound;
pub mod projector;

#[doc(hidden)]
pub mod __bindings;

pub use error::{Error, ErrorKind};
pub use event::Event;
pub use message::{Header, Message};
pub use money::{Decimal, Money, Rounding};
pub use outbound::{Command, Request, Response};
pub use projector::{Projector, ProjectorInfo, Refusal, StreamEvent};

/// The bindings generator, re-exported so that plugins depend on this crate alone.
pub use wit_bindgen;

/// What a plugin is: its name, its own version and the vendor API version it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's name, kebab-case.
    pub name: String,
    /// The plugin's own version, semver.
    pub version: String,
    /// The vendor API version the plugin speaks.
    pub vendor_api_version: String,
}

impl PluginInfo {
    /// Builds the metadata from its three parts.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        vendor_api_version: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            vendor_api_version: vendor_api_version.into(),
        }
    }
}

/// Every plugin says what it is.
pub trait Plugin {
    /// The plugin's metadata; the same value on every call.
    fn info() -> PluginInfo;
}

/// The inbound direction: a vendor message in, domain events out.
pub trait Inbound: Plugin {
    /// The key the host deduplicates this message under, derived from its content.
    ///
    /// By default, none: the host falls back to the `Idempotency-Key` header or a hash of
    /// the body.
    fn idempotency_key(message: &Message) -> Option<String> {
        let _ = message;
        None
    }

    /// Translates one vendor message into domain events.
    ///
    /// # Errors
    ///
    /// [`Error::rejected`] when the message is wrong and will stay wrong, and
    /// [`Error::transient`] when a later attempt may succeed.
    fn translate(message: &Message) -> Result<Vec<Event>, Error>;
}

/// The outbound direction: a domain command to a vendor request, the vendor's response back
/// to domain events.
pub trait Outbound: Plugin {
    /// Turns a domain command into the request the vendor expects.
    ///
    /// # Errors
    ///
    /// [`Error::rejected`] when the command cannot be expressed in the vendor's model.
    fn encode(command: &Command) -> Result<Request, Error>;

    /// Turns the vendor's answer into domain events.
    ///
    /// # Errors
    ///
    /// [`Error::rejected`] for an answer that says the command failed for good,
    /// [`Error::transient`] for one worth retrying.
    fn decode(command: &Command, response: &Response) -> Result<Vec<Event>, Error>;
}

/// Exports a plugin type as a translator component.
///
/// Name the directions it implements: `export!(T: inbound)`, `export!(T: outbound)` or
/// `export!(T: inbound, outbound)`. Use it once per plugin crate.
///
/// ```no_run
/// use dragoman_guest::{Command, Error, Event, Inbound, Message, Outbound, Plugin, PluginInfo};
/// use dragoman_guest::{Request, Response};
///
/// struct Erp;
///
/// impl Plugin for Erp {
///     fn info() -> PluginInfo {
///         PluginInfo::new("erp", "1.0.0", "erp/v3")
///     }
/// }
///
/// impl Inbound for Erp {
///     fn translate(message: &Message) -> Result<Vec<Event>, Error> {
///         Ok(vec![Event::json("erp.touched.v1", message.id(), &message.body().len())?])
///     }
/// }
///
/// impl Outbound for Erp {
///     fn encode(command: &Command) -> Result<Request, Error> {
///         Request::new("post", format!("/orders/{}", command.subject)).json(&command.data)
///     }
///
///     fn decode(command: &Command, response: &Response) -> Result<Vec<Event>, Error> {
///         match response.status {
///             200..=299 => Ok(vec![Event::json("erp.accepted.v1", &command.subject, &response.status)?]),
///             500..=599 => Err(Error::transient("vendor-unavailable", format!("status {}", response.status))),
///             status => Err(Error::rejected("vendor-refused", format!("status {status}"))),
///         }
///     }
/// }
///
/// dragoman_guest::export!(Erp: inbound, outbound);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export {
    ($plugin:ty : $($direction:ident),+ $(,)?) => {
        #[doc(hidden)]
        type __DragomanExport = $crate::__bindings::Adapter<$plugin>;
        $crate::__bindings::__export_metadata!(
            __DragomanExport with_types_in $crate::__bindings::metadata
        );
        $( $crate::export!(@direction $direction); )+
    };
    (@direction inbound) => {
        $crate::__bindings::__export_inbound!(
            __DragomanExport with_types_in $crate::__bindings::inbound
        );
    };
    (@direction outbound) => {
        $crate::__bindings::__export_outbound!(
            __DragomanExport with_types_in $crate::__bindings::outbound
        );
    };
}
