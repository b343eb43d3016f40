//! The ACME ERP's order API v1, and its translation into the domain `Order`: shared by the
//! v1 translator and by v2, which still reads the v1 messages some systems send.
//!
//! The vendor sends `{ord_id, ord_status: "O"|"C"|"X", line_items: [{sku, qty, unit_prc}]}`
//! as JSON, XML or form data. Prices are decimal numbers in major units of the currency set
//! by the route's plugin config key `currency` (EUR when unset), rounded half to even to the
//! currency's minor unit. No floating point number is involved.

use dragoman_guest::de;
use dragoman_guest::{Decimal, Error, Event, Message, Money, Rounding};
use orders_domain::{Item, Order, Status};
use serde::Deserialize;

/// The currency when the route's plugin config sets none.
pub const DEFAULT_CURRENCY: &str = "EUR";

// ===== The vendor's model =====

#[derive(Debug, Deserialize)]
struct VendorOrder {
    #[serde(deserialize_with = "de::text")]
    ord_id: String,
    ord_status: String,
    #[serde(deserialize_with = "de::list")]
    line_items: Vec<VendorLine>,
}

#[derive(Debug, Deserialize)]
struct VendorLine {
    #[serde(deserialize_with = "de::text")]
    sku: String,
    #[serde(deserialize_with = "de::number")]
    qty: i64,
    unit_prc: Decimal,
}

#[derive(Debug, Deserialize)]
struct VendorOrderId {
    #[serde(deserialize_with = "de::text")]
    ord_id: String,
}

// ===== The translation =====

/// The idempotency key of a v1 message: `order-created-{ord_id}`, or none without an id.
pub fn key_of(message: &Message) -> Option<String> {
    let order: VendorOrderId = message.parse().ok()?;
    Order::created_key(&order.ord_id)
}

/// Whether the message speaks API v1: it has an `ord_id`.
pub fn is_v1(message: &Message) -> bool {
    message.parse::<VendorOrderId>().is_ok()
}

/// The whole translation for a given currency, with no host import: what `translate` does
/// once it has read the config. The host's benchmark runs this same source natively.
///
/// # Errors
///
/// `rejected`, as the fixtures list.
pub fn translate_in(message: &Message, currency: &str) -> Result<Vec<Event>, Error> {
    let order = to_domain(message.parse()?, currency)?;
    Ok(vec![order.created()?])
}

fn to_domain(order: VendorOrder, currency: &str) -> Result<Order, Error> {
    let id = order.ord_id.trim().to_owned();
    if id.is_empty() {
        return Err(Error::missing_field("ord_id"));
    }
    let status = match order.ord_status.trim() {
        "O" => Status::Open,
        "C" => Status::Closed,
        "X" => Status::Cancelled,
        other => {
            return Err(Error::rejected(
                "unknown-status",
                format!("ord_status `{other}` is not one of O, C, X"),
            ));
        }
    };
    if order.line_items.is_empty() {
        return Err(Error::rejected(
            "no-line-items",
            format!("order {id} has no line items"),
        ));
    }
    let items = order
        .line_items
        .into_iter()
        .enumerate()
        .map(|(n, line)| item(n, line, currency))
        .collect::<Result<_, _>>()?;
    Ok(Order { id, status, items })
}

fn item(n: usize, line: VendorLine, currency: &str) -> Result<Item, Error> {
    if line.qty <= 0 {
        return Err(Error::rejected(
            "invalid-quantity",
            format!("line_items[{n}].qty is {}; it must be at least 1", line.qty),
        ));
    }
    if line.unit_prc.is_negative() {
        return Err(Error::rejected(
            "invalid-price",
            format!("line_items[{n}].unit_prc is negative"),
        ));
    }
    let sku = line.sku.trim().to_owned();
    if sku.is_empty() {
        return Err(Error::missing_field(&format!("line_items[{n}].sku")));
    }
    Ok(Item {
        product_sku: sku,
        quantity: line.qty,
        unit_price: Money::from_decimal(line.unit_prc, currency, Rounding::HalfEven)?,
    })
}
