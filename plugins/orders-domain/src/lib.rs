//! Our domain model of orders: what every order translator emits, whatever the vendor.
//!
//! One definition shared by the translators keeps their output identical; the event type
//! carries the schema version (`order.created.v1`).

use dragoman_guest::{Error, Event, Money};
use serde::Serialize;

/// The event emitted for an order a vendor reports.
pub const ORDER_CREATED: &str = "order.created.v1";

/// An order.
#[derive(Debug, Serialize)]
pub struct Order {
    /// The vendor's order id, trimmed.
    pub id: String,
    /// Where it stands.
    pub status: Status,
    /// Its lines, in the vendor's order.
    pub items: Vec<Item>,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Placed, not yet fulfilled.
    Open,
    /// Fulfilled.
    Closed,
    /// Called off.
    Cancelled,
}

/// One line of an order.
#[derive(Debug, Serialize)]
pub struct Item {
    /// The product's stock keeping unit.
    pub product_sku: String,
    /// How many, at least 1.
    pub quantity: i64,
    /// The price of one, in minor units.
    pub unit_price: Money,
}

impl Order {
    /// The `order.created.v1` event, keyed and partitioned by the order id.
    ///
    /// # Errors
    ///
    /// Only if the order cannot be serialized, which does not happen for this type.
    pub fn created(&self) -> Result<Event, Error> {
        Event::json(ORDER_CREATED, &self.id, self)
    }

    /// The idempotency key of the creation of order `id`.
    pub fn created_key(id: &str) -> Option<String> {
        let id = id.trim();
        (!id.is_empty()).then(|| format!("order-created-{id}"))
    }
}
