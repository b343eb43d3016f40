//! ACME ERP orders, vendor API v2, into the domain `Order`: the same domain output as the v1
//! translator, so that swapping one for the other changes nothing downstream.
//!
//! API v2 renamed every field, spells the status as a word, sends prices as decimal strings
//! and may carry the currency:
//! `{orderNumber, orderStatus: "OPEN"|"CLOSED"|"CANCELLED", currency?, lines: [{productCode,
//! quantity, unitPrice: "12.50"}]}`. A price sent as a JSON number is refused: v2 promises
//! strings, and a number means the sender is not speaking v2. The currency is the message's,
//! else the route's plugin config key `currency`, else EUR.
//!
//! While the vendor migrates, some of its systems still send API v1 (a message with v1's
//! `ord_id`): those are translated exactly as the v1 translator does, with the same
//! library (`acme-erp-v1`), so that this version can replace v1 on a route that receives
//! both.
//!
//! Outbound, it carries two domain commands to the ERP's API v2:
//! - `order.get.v1` (`{}`): `GET /v2/orders/{id}`; the order it answers becomes
//!   `order.snapshot.v1` (the domain `Order`);
//! - `order.cancel.v1` (`{"reason": "…"}`): `POST /v2/orders/{id}/cancellation` with
//!   `{"reason"}`, safe to retry (API v2 deduplicates by `Idempotency-Key`); the cancelled
//!   order it answers becomes `order.cancelled.v1`.
//!
//! An answer of 404 is refused as `unknown-order`, 409 as `not-cancellable`, any other 4xx
//! as `vendor-refused`; 429 and 5xx are `transient` (`vendor-unavailable`).

use dragoman_guest::de;
use dragoman_guest::{
    Command, Decimal, Error, Event, Inbound, Message, Money, Outbound, Plugin, PluginInfo, Request,
    Response, Rounding,
};
use orders_domain::{Item, Order, Status};
use serde::Deserialize;
use serde_json::Value;

/// The currency when neither the message nor the route's plugin config sets one.
pub const DEFAULT_CURRENCY: &str = "EUR";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VendorOrder {
    #[serde(deserialize_with = "de::text")]
    order_number: String,
    order_status: String,
    currency: Option<String>,
    #[serde(deserialize_with = "de::list")]
    lines: Vec<VendorLine>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VendorLine {
    #[serde(deserialize_with = "de::text")]
    product_code: String,
    #[serde(deserialize_with = "de::number")]
    quantity: i64,
    unit_price: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VendorOrderId {
    #[serde(deserialize_with = "de::text")]
    order_number: String,
}

struct AcmeErpOrdersV2;

impl Plugin for AcmeErpOrdersV2 {
    fn info() -> PluginInfo {
        PluginInfo::new("acme-erp-orders", env!("CARGO_PKG_VERSION"), "acme-erp/v2")
    }
}

impl Inbound for AcmeErpOrdersV2 {
    fn idempotency_key(message: &Message) -> Option<String> {
        if acme_erp_v1::is_v1(message) {
            return acme_erp_v1::key_of(message);
        }
        let order: VendorOrderId = message.parse().ok()?;
        Order::created_key(&order.order_number)
    }

    fn translate(message: &Message) -> Result<Vec<Event>, Error> {
        if acme_erp_v1::is_v1(message) {
            let currency = dragoman_guest::config::get("currency")
                .unwrap_or_else(|| DEFAULT_CURRENCY.to_owned());
            return acme_erp_v1::translate_in(message, &currency);
        }
        let order: VendorOrder = message.parse()?;
        let currency = match order.currency.as_deref().map(str::trim) {
            Some(currency) if !currency.is_empty() => currency.to_owned(),
            _ => dragoman_guest::config::get("currency")
                .unwrap_or_else(|| DEFAULT_CURRENCY.to_owned()),
        };
        Ok(vec![to_domain(order, &currency)?.created()?])
    }
}

/// What `order.cancel.v1` carries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cancel {
    reason: String,
}

impl Outbound for AcmeErpOrdersV2 {
    fn encode(command: &Command) -> Result<Request, Error> {
        let id = command.subject.trim();
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::rejected(
                "invalid-order-id",
                format!(
                    "`{}` is not an ACME order number (letters, digits, - and _)",
                    command.subject
                ),
            ));
        }
        match command.command_type.as_str() {
            "order.get.v1" => Ok(Request::new("GET", format!("/v2/orders/{id}"))),
            "order.cancel.v1" => {
                let cancel: Cancel = command.parse()?;
                if cancel.reason.trim().is_empty() {
                    return Err(Error::missing_field("reason"));
                }
                Request::new("POST", format!("/v2/orders/{id}/cancellation"))
                    .retry_safe()
                    .json(&serde_json::json!({"reason": cancel.reason.trim()}))
            }
            other => Err(Error::rejected(
                "unknown-command",
                format!("`{other}` is not one of order.get.v1, order.cancel.v1"),
            )),
        }
    }

    fn decode(command: &Command, response: &Response) -> Result<Vec<Event>, Error> {
        match response.status {
            200..=299 => {}
            404 => {
                return Err(Error::rejected(
                    "unknown-order",
                    format!("ACME knows no order `{}`", command.subject),
                ));
            }
            409 => {
                return Err(Error::rejected(
                    "not-cancellable",
                    format!("ACME refused to cancel order `{}`", command.subject),
                ));
            }
            429 | 500..=599 => {
                return Err(Error::transient(
                    "vendor-unavailable",
                    format!("ACME answered {}", response.status),
                ));
            }
            status => {
                return Err(Error::rejected(
                    "vendor-refused",
                    format!("ACME answered {status}"),
                ));
            }
        }
        let order: VendorOrder = response.parse()?;
        let currency = order
            .currency
            .clone()
            .filter(|c| !c.trim().is_empty())
            .or_else(|| dragoman_guest::config::get("currency"))
            .unwrap_or_else(|| DEFAULT_CURRENCY.to_owned());
        let order = to_domain(order, currency.trim())?;
        let event_type = match command.command_type.as_str() {
            "order.cancel.v1" => "order.cancelled.v1",
            _ => "order.snapshot.v1",
        };
        Ok(vec![Event::json(event_type, &order.id, &order)?])
    }
}

fn to_domain(order: VendorOrder, currency: &str) -> Result<Order, Error> {
    let id = order.order_number.trim().to_owned();
    if id.is_empty() {
        return Err(Error::missing_field("orderNumber"));
    }
    let status = match order.order_status.trim().to_ascii_uppercase().as_str() {
        "OPEN" => Status::Open,
        "CLOSED" => Status::Closed,
        "CANCELLED" | "CANCELED" => Status::Cancelled,
        _ => {
            return Err(Error::rejected(
                "unknown-status",
                format!(
                    "orderStatus `{}` is not one of OPEN, CLOSED, CANCELLED",
                    order.order_status
                ),
            ));
        }
    };
    if order.lines.is_empty() {
        return Err(Error::rejected(
            "no-line-items",
            format!("order {id} has no lines"),
        ));
    }
    let items = order
        .lines
        .into_iter()
        .enumerate()
        .map(|(n, line)| item(n, line, currency))
        .collect::<Result<_, _>>()?;
    Ok(Order { id, status, items })
}

fn item(n: usize, line: VendorLine, currency: &str) -> Result<Item, Error> {
    if line.quantity <= 0 {
        return Err(Error::rejected(
            "invalid-quantity",
            format!(
                "lines[{n}].quantity is {}; it must be at least 1",
                line.quantity
            ),
        ));
    }
    let price: Decimal = match &line.unit_price {
        Value::String(text) => text.trim().parse().map_err(|e: Error| {
            Error::rejected(
                "invalid-price",
                format!("lines[{n}].unitPrice: {}", e.message()),
            )
        })?,
        Value::Null => return Err(Error::missing_field(&format!("lines[{n}].unitPrice"))),
        other => {
            return Err(Error::rejected(
                "invalid-price",
                format!("lines[{n}].unitPrice is {other}; API v2 sends prices as decimal strings"),
            ));
        }
    };
    if price.is_negative() {
        return Err(Error::rejected(
            "invalid-price",
            format!("lines[{n}].unitPrice is negative"),
        ));
    }
    let sku = line.product_code.trim().to_owned();
    if sku.is_empty() {
        return Err(Error::missing_field(&format!("lines[{n}].productCode")));
    }
    Ok(Item {
        product_sku: sku,
        quantity: line.quantity,
        unit_price: Money::from_decimal(price, currency, Rounding::HalfEven)?,
    })
}

dragoman_guest::export!(AcmeErpOrdersV2: inbound, outbound);
