//! ACME ERP order cancellations (API v1) into our domain: `order.cancelled.v1`.
//!
//! The ERP's quirks, kept here:
//! - Reasons are short codes: `CUST` (the customer asked), `FRAUD`, `STOCK` (out of stock),
//!   `DUP` (a duplicate order); any other is rejected (`unknown-reason`).
//! - `cancelled_at` is the ERP's local wall time, `YYYY-MM-DD HH:MM:SS`, without an offset:
//!   the route's plugin config `utc_offset` (`+01:00`; `Z` when unset) says where the ERP
//!   stands, and the event's `occurred_at` is RFC 3339 with it.
//! - Bodies come as JSON, XML or form data, like the ERP's orders.
//!
//! Whether a cancellation is allowed (not after shipping) is the domain's to say, in the
//! order fold: this plugin translates what the ERP says happened.

use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo, config};
use orders_domain::{Cancelled, ORDER_CANCELLED};
use serde::Deserialize;

#[derive(Deserialize)]
struct Cancellation {
    ord_id: String,
    cancel_reason: String,
    cancelled_at: String,
}

struct Cancellations;

impl Plugin for Cancellations {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "acme-erp-cancellations",
            env!("CARGO_PKG_VERSION"),
            "acme-erp/v1",
        )
    }
}

impl Inbound for Cancellations {
    fn idempotency_key(message: &Message) -> Option<String> {
        let cancellation: Cancellation = message.parse().ok()?;
        let id = cancellation.ord_id.trim();
        (!id.is_empty()).then(|| format!("order-cancelled-{id}"))
    }

    fn translate(message: &Message) -> Result<Vec<Event>, Error> {
        let cancellation: Cancellation = message.parse()?;
        let order_id = cancellation.ord_id.trim();
        if order_id.is_empty() {
            return Err(Error::missing_field("ord_id"));
        }
        let reason = match cancellation.cancel_reason.trim() {
            "CUST" => "customer-request",
            "FRAUD" => "fraud-suspected",
            "STOCK" => "out-of-stock",
            "DUP" => "duplicate-order",
            other => {
                return Err(Error::rejected(
                    "unknown-reason",
                    format!("cancel_reason `{other}` is not one of CUST, FRAUD, STOCK, DUP"),
                ));
            }
        };
        let cancelled = Cancelled {
            order_id: order_id.to_owned(),
            reason: reason.to_owned(),
            occurred_at: Some(occurred_at(cancellation.cancelled_at.trim())?),
        };
        Ok(vec![Event::json(ORDER_CANCELLED, order_id, &cancelled)?])
    }
}

/// `YYYY-MM-DD HH:MM:SS` in the ERP's offset, as RFC 3339.
fn occurred_at(local: &str) -> Result<String, Error> {
    let shape = local.len() == 19
        && local.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return Err(Error::invalid_value(
            "cancelled_at",
            local,
            "it must be `YYYY-MM-DD HH:MM:SS`",
        ));
    }
    let offset = config::get("utc_offset").unwrap_or_else(|| "Z".into());
    let valid_offset = offset == "Z"
        || (offset.len() == 6
            && offset.bytes().enumerate().all(|(i, b)| match i {
                0 => b == b'+' || b == b'-',
                3 => b == b':',
                _ => b.is_ascii_digit(),
            }));
    if !valid_offset {
        return Err(Error::transient(
            "not-configured",
            format!("the route's plugin config `utc_offset` is `{offset}`: give `Z` or `+HH:MM`"),
        ));
    }
    Ok(format!("{}T{}{offset}", &local[..10], &local[11..]))
}

dragoman_guest::export!(Cancellations: inbound);
