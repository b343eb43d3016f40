//! The fold of an order's events into its state: `order.created.v1` from the ERP,
//! `order.paid.v1` from the payment gateway, `order.shipped.v1` from the carrier and
//! `order.cancelled.v1` from the ERP, each from its own translator.
//!
//! The state keeps facts (the order, its payments, its shipments, its cancellation) and
//! derives the status from them by precedence, so that events that arrive out of order
//! (a carrier scan before the payment) give the same state as in order. What cannot happen
//! is refused, with the state left as it was:
//! - anything before the order was created (`not-created`), and a second creation
//!   (`already-created`);
//! - a payment or a shipment of a cancelled order (`cancelled`);
//! - a cancellation after shipping (`already-shipped`);
//! - a payment in another currency than the order's (`currency-mismatch`);
//! - an event type this fold does not know (`unknown-event`).
//!
//! A payment seen twice (the same `payment_reference`) and a shipment seen twice (the same
//! tracking number) change nothing: the gateway and the carrier deliver more than once.

use dragoman_guest::{Money, Projector, ProjectorInfo, Refusal, StreamEvent};
use orders_domain::{Cancelled, Paid, Shipped};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An order as the fold knows it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Order {
    /// `none` until created, then `created`, `paid`, `shipped` or `cancelled`.
    status: Status,
    /// The order as the ERP created it (its id, ERP status, items), once created.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    order: Option<Value>,
    /// Its total in minor units, from the items.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    total: Option<Money>,
    /// Payments, in the order they were applied.
    #[serde(default)]
    payments: Vec<Payment>,
    /// The sum of the payments, in the order's currency.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    paid: Option<Money>,
    /// Shipments, in the order they were applied.
    #[serde(default)]
    shipments: Vec<Shipment>,
    /// Why and when it was cancelled, if it was.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    cancellation: Option<Cancellation>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    #[default]
    None,
    Created,
    Paid,
    Shipped,
    Cancelled,
}

#[derive(Debug, Serialize, Deserialize)]
struct Payment {
    payment_reference: String,
    amount: Money,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    occurred_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Shipment {
    carrier: String,
    tracking_number: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    occurred_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cancellation {
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    occurred_at: Option<String>,
}

/// `order.created.v1`: the fields the fold reads; the whole payload is kept.
#[derive(Deserialize)]
struct Created {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    quantity: i64,
    unit_price: Money,
}

struct OrderFold;

impl Projector for OrderFold {
    type State = Order;

    fn info() -> ProjectorInfo {
        ProjectorInfo::new("order-fold", env!("CARGO_PKG_VERSION"), "order")
    }

    fn initial() -> Order {
        Order::default()
    }

    fn apply(mut order: Order, event: &StreamEvent) -> Result<Order, Refusal> {
        let kind = event
            .event_type
            .strip_prefix("order.")
            .and_then(|rest| rest.rsplit_once('.'))
            .map(|(kind, _version)| kind);
        let occurred_at = event.occurred_at.clone();
        match kind {
            Some("created") => {
                if order.status != Status::None {
                    return Err(refused("already-created", event, &order));
                }
                let created: Created = event.data()?;
                order.total = Some(total(&created.items, event)?);
                order.order = Some(event.data()?);
            }
            Some("paid") => {
                let paid: Paid = event.data()?;
                must_be_open(&order, event)?;
                if order
                    .payments
                    .iter()
                    .any(|p| p.payment_reference == paid.payment_reference)
                {
                    return Ok(order);
                }
                let so_far = order.paid.unwrap_or(Money {
                    amount_minor: 0,
                    currency: paid.amount.currency.clone(),
                });
                if let Some(total) = &order.total
                    && total.currency != paid.amount.currency
                {
                    return Err(Refusal::new(
                        "currency-mismatch",
                        format!(
                            "event {} pays in {} an order in {}",
                            event.seq, paid.amount.currency, total.currency
                        ),
                    ));
                }
                order.paid = Some(Money {
                    amount_minor: so_far.amount_minor.saturating_add(paid.amount.amount_minor),
                    currency: so_far.currency,
                });
                order.payments.push(Payment {
                    payment_reference: paid.payment_reference,
                    amount: paid.amount,
                    occurred_at,
                });
            }
            Some("shipped") => {
                let shipped: Shipped = event.data()?;
                must_be_open(&order, event)?;
                if order
                    .shipments
                    .iter()
                    .any(|s| s.tracking_number == shipped.tracking_number)
                {
                    return Ok(order);
                }
                order.shipments.push(Shipment {
                    carrier: shipped.carrier,
                    tracking_number: shipped.tracking_number,
                    occurred_at,
                });
            }
            Some("cancelled") => {
                let cancelled: Cancelled = event.data()?;
                if order.status == Status::None {
                    return Err(refused("not-created", event, &order));
                }
                if order.cancellation.is_some() {
                    return Ok(order);
                }
                if !order.shipments.is_empty() {
                    return Err(refused("already-shipped", event, &order));
                }
                order.cancellation = Some(Cancellation {
                    reason: cancelled.reason,
                    occurred_at,
                });
            }
            _ => {
                return Err(Refusal::new(
                    "unknown-event",
                    format!(
                        "event {} has type {}, which the order fold does not know",
                        event.seq, event.event_type
                    ),
                ));
            }
        }
        order.status = status(&order);
        Ok(order)
    }
}

/// The status the facts give, by precedence.
fn status(order: &Order) -> Status {
    if order.order.is_none() {
        Status::None
    } else if order.cancellation.is_some() {
        Status::Cancelled
    } else if !order.shipments.is_empty() {
        Status::Shipped
    } else if !order.payments.is_empty() {
        Status::Paid
    } else {
        Status::Created
    }
}

/// A payment or a shipment needs an order that exists and is not cancelled.
fn must_be_open(order: &Order, event: &StreamEvent) -> Result<(), Refusal> {
    match order.status {
        Status::None => Err(refused("not-created", event, order)),
        Status::Cancelled => Err(refused("cancelled", event, order)),
        _ => Ok(()),
    }
}

fn refused(code: &str, event: &StreamEvent, order: &Order) -> Refusal {
    let status = serde_json::to_value(order.status)
        .ok()
        .and_then(|s| s.as_str().map(str::to_owned))
        .unwrap_or_default();
    Refusal::new(
        code,
        format!(
            "event {} ({}) cannot apply to an order whose status is {status}",
            event.seq, event.event_type
        ),
    )
}

/// The sum of the items' prices, refusing mixed currencies and overflow.
fn total(items: &[Item], event: &StreamEvent) -> Result<Money, Refusal> {
    let invalid = |why: &str| {
        Refusal::new(
            "invalid-event-data",
            format!("event {} ({}): {why}", event.seq, event.event_type),
        )
    };
    let Some(first) = items.first() else {
        return Err(invalid("the order has no items"));
    };
    let currency = first.unit_price.currency.clone();
    let mut sum: i64 = 0;
    for item in items {
        if item.unit_price.currency != currency {
            return Err(invalid("the items are priced in more than one currency"));
        }
        sum = item
            .unit_price
            .amount_minor
            .checked_mul(item.quantity)
            .and_then(|line| sum.checked_add(line))
            .ok_or_else(|| invalid("the total overflows"))?;
    }
    Ok(Money {
        amount_minor: sum,
        currency,
    })
}

dragoman_guest::export_projector!(OrderFold);
