//! Our domain model of orders: what every order translator emits, whatever the vendor.
//!
//! One definition shared by the translators keeps their output identical, and the order fold
//! reads the same definitions; the event type carries the schema version (`order.created.v1`).
//! The life of an order: created (the ERP), paid (the payment gateway), shipped (the carrier),
//! cancelled (the ERP).

use dragoman_guest::{Error, Event, Money};
use serde::{Deserialize, Serialize};

/// The event emitted for an order a vendor reports.
pub const ORDER_CREATED: &str = "order.created.v1";
/// The event of a payment captured for an order.
pub const ORDER_PAID: &str = "order.paid.v1";
/// The event of an order's parcel picked up by a carrier.
pub const ORDER_SHIPPED: &str = "order.shipped.v1";
/// The event of an order called off.
pub const ORDER_CANCELLED: &str = "order.cancelled.v1";

/// `order.paid.v1`: a payment captured for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paid {
    /// The order.
    pub order_id: String,
    /// The gateway's reference of the payment: the same payment delivered twice has one.
    pub payment_reference: String,
    /// How much, in minor units.
    pub amount: Money,
    /// When it was captured, RFC 3339, by the gateway's word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
}

/// `order.shipped.v1`: an order's parcel picked up by a carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipped {
    /// The order.
    pub order_id: String,
    /// Which carrier, for example `swiftship`.
    pub carrier: String,
    /// The carrier's tracking number: the same parcel scanned twice has one.
    pub tracking_number: String,
    /// When it was picked up, RFC 3339, by the carrier's word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
}

/// `order.cancelled.v1`: an order called off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    /// The order.
    pub order_id: String,
    /// Why, kebab-case: `customer-request`, `fraud-suspected`, `out-of-stock`,
    /// `duplicate-order`.
    pub reason: String,
    /// When, RFC 3339, by the ERP's word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
}

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
