//! ACME ERP orders, vendor API v1, into the domain `Order`.
//!
//! The vendor sends `{ord_id, ord_status: "O"|"C"|"X", line_items: [{sku, qty, unit_prc}]}`
//! as JSON, XML or form data. Prices are decimal numbers in major units of the currency set
//! by the route's plugin config key `currency` (EUR when unset), rounded half to even to the
//! currency's minor unit. No floating point number is involved.

use dragoman_guest::de;
use dragoman_guest::{
    Decimal, Error, Event, Inbound, Message, Money, Plugin, PluginInfo, Rounding,
};
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

struct AcmeErpOrders;

impl Plugin for AcmeErpOrders {
    fn info() -> PluginInfo {
        PluginInfo::new("acme-erp-orders", env!("CARGO_PKG_VERSION"), "acme-erp/v1")
    }
}

impl Inbound for AcmeErpOrders {
    fn idempotency_key(message: &Message) -> Option<String> {
        let order: VendorOrderId = message.parse().ok()?;
        Order::created_key(&order.ord_id)
    }

    fn translate(message: &Message) -> Result<Vec<Event>, Error> {
        let currency =
            dragoman_guest::config::get("currency").unwrap_or_else(|| DEFAULT_CURRENCY.to_owned());
        translate_in(message, &currency)
    }
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

dragoman_guest::export!(AcmeErpOrders: inbound);
