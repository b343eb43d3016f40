//! Paylane, a payment gateway, into our domain: its `payment.captured` webhook becomes
//! `order.paid.v1`.
//!
//! The gateway's quirks, each kept here so that nothing past this plugin sees them:
//! - **Signed deliveries.** `Paylane-Signature: t=UNIX,v1=HEX[,v1=HEX]` is an HMAC-SHA256 of
//!   `t` `.` body under the route's `signing_secret` (plugin config). During a secret
//!   rotation the gateway sends one `v1` per secret; one matching is enough. A delivery
//!   without the header, or with none matching, is rejected (`missing-signature`,
//!   `bad-signature`); a route without the secret cannot check anything, which is the
//!   operator's to fix, so that is `transient` (`not-configured`) and the sender retries.
//!   The timestamp is signed but its age is not checked: a translation is a pure function
//!   with no clock, and a replay of the same delivery is a duplicate the host drops anyway.
//! - **Amounts in minor units as strings** (`"2800"` is 28.00 EUR), integers accepted too;
//!   decimals (`"28.00"`) are rejected (`invalid-amount`) rather than guessed at. Currency
//!   codes arrive in lower case.
//! - **Duplicate deliveries** carry a new event `id` but the same payment `reference`: the
//!   idempotency key is the reference and the event type, so the host keeps one. The key is
//!   derived only from a delivery whose signature verifies: a forged delivery that names a
//!   real reference falls back to its body's hash, so it can neither settle the genuine
//!   delivery's key first nor be answered with the genuine message's outcome.
//! - **Event types this plugin does not turn into domain events** (`payment.authorized`,
//!   `payment.failed`, types the gateway adds later) give no events: acknowledged, not
//!   dead-lettered, since a gateway retries what is not acknowledged.

use dragoman_guest::{Error, Event, Inbound, Message, Money, Plugin, PluginInfo, config, log};
use hmac::{Hmac, KeyInit, Mac};
use orders_domain::{ORDER_PAID, Paid};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

const SIGNATURE: &str = "paylane-signature";

#[derive(Deserialize)]
struct Webhook {
    #[serde(rename = "type")]
    event_type: String,
    created_at: Option<String>,
    payment: Payment,
}

#[derive(Deserialize)]
struct Payment {
    reference: String,
    order_reference: String,
    amount: Value,
    currency: String,
}

struct Paylane;

impl Plugin for Paylane {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "paylane-payments",
            env!("CARGO_PKG_VERSION"),
            "paylane/2025-06",
        )
    }
}

impl Inbound for Paylane {
    fn idempotency_key(message: &Message) -> Option<String> {
        verify(message).ok()?;
        let webhook: Webhook = serde_json::from_slice(message.body()).ok()?;
        let reference = webhook.payment.reference.trim();
        (!reference.is_empty()).then(|| format!("paylane-{}-{reference}", webhook.event_type))
    }

    fn translate(message: &Message) -> Result<Vec<Event>, Error> {
        verify(message)?;
        let webhook: Webhook = message.parse()?;
        if webhook.event_type != "payment.captured" {
            log::info(&format!(
                "acknowledged a `{}` webhook: no domain event",
                webhook.event_type
            ));
            return Ok(Vec::new());
        }
        let payment = webhook.payment;
        let order_id = payment.order_reference.trim();
        if order_id.is_empty() {
            return Err(Error::missing_field("payment.order_reference"));
        }
        let reference = payment.reference.trim();
        if reference.is_empty() {
            return Err(Error::missing_field("payment.reference"));
        }
        let paid = Paid {
            order_id: order_id.to_owned(),
            payment_reference: reference.to_owned(),
            amount: Money {
                amount_minor: amount(&payment.amount)?,
                currency: currency(&payment.currency)?,
            },
            occurred_at: webhook.created_at,
        };
        Ok(vec![Event::json(ORDER_PAID, order_id, &paid)?])
    }
}

/// Checks `Paylane-Signature` against the route's secret.
fn verify(message: &Message) -> Result<(), Error> {
    let Some(secret) = config::get("signing_secret").filter(|s| !s.is_empty()) else {
        return Err(Error::transient(
            "not-configured",
            "the route's plugin config has no `signing_secret`: signatures cannot be checked",
        ));
    };
    let header = message.header(SIGNATURE).ok_or_else(|| {
        Error::rejected(
            "missing-signature",
            "the `Paylane-Signature` header is missing",
        )
    })?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", hex)) => signatures.push(hex),
            _ => {}
        }
    }
    let bad = |why: &str| Error::rejected("bad-signature", format!("`Paylane-Signature` {why}"));
    let timestamp = timestamp.ok_or_else(|| bad("has no `t=`"))?;
    if signatures.is_empty() {
        return Err(bad("has no `v1=`"));
    }
    for hex in signatures {
        let Some(expected) = unhex(hex) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(message.body());
        // Compared in constant time.
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(bad(
        "matches no signature of this body under the route's secret",
    ))
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Minor units, given as a string of digits or an integer.
fn amount(value: &Value) -> Result<i64, Error> {
    let invalid =
        |why: &str| Error::rejected("invalid-amount", format!("payment.amount {value} {why}"));
    let minor = match value {
        Value::String(text) => {
            let text = text.trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("is not a whole number of minor units"));
            }
            text.parse::<i64>().map_err(|_| invalid("is too large"))?
        }
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| invalid("is not a whole number of minor units"))?,
        _ => return Err(invalid("is not a number")),
    };
    if minor < 0 {
        return Err(invalid("is negative"));
    }
    Ok(minor)
}

/// An ISO 4217 code, upper-cased.
fn currency(code: &str) -> Result<String, Error> {
    let upper = code.trim().to_ascii_uppercase();
    if upper.len() != 3 || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::rejected(
            "invalid-currency",
            format!("payment.currency `{code}` is not an ISO 4217 code"),
        ));
    }
    dragoman_guest::money::minor_unit_exponent(&upper)?;
    Ok(upper)
}

dragoman_guest::export!(Paylane: inbound);
