//! {{name}}: a Dragoman translator. Replace the vendor and domain types with yours.

use dragoman_guest::{Decimal, Error, Event, Inbound, Message, Money, Plugin, PluginInfo, Rounding, de};
use serde::{Deserialize, Serialize};

/// What the vendor sends (as JSON, XML or form data: `message.parse` reads them all).
#[derive(Deserialize)]
struct VendorMessage {
    #[serde(deserialize_with = "de::text")]
    id: String,
    kind: Option<String>,
    amount: Option<Decimal>,
    currency: Option<String>,
}

/// What our domain gets.
#[derive(Serialize)]
struct Received {
    id: String,
    kind: String,
    /// Integer minor units and the currency: `{"amount_minor": 1250, "currency": "EUR"}`.
    amount: Option<Money>,
}

struct Translator;

impl Plugin for Translator {
    fn info() -> PluginInfo {
        PluginInfo::new("{{name}}", env!("CARGO_PKG_VERSION"), "vendor/v1")
    }
}

impl Inbound for Translator {
    fn idempotency_key(message: &Message) -> Option<String> {
        let vendor: VendorMessage = message.parse().ok()?;
        Some(format!("example-{}", vendor.id))
    }

    fn translate(message: &Message) -> Result<Vec<Event>, Error> {
        let vendor: VendorMessage = message.parse()?;
        let amount = match vendor.amount {
            Some(amount) => {
                let currency = vendor.currency.ok_or_else(|| Error::missing_field("currency"))?;
                // An amount with more digits than the currency has is refused, not rounded.
                Some(Money::from_decimal(amount, &currency, Rounding::Exact)?)
            }
            None => None,
        };
        let received = Received { id: vendor.id, kind: vendor.kind.unwrap_or_default(), amount };
        Ok(vec![Event::json("example.received.v1", &received.id, &received)?])
    }
}

dragoman_guest::export!(Translator: inbound);
