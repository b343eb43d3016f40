//! {{name}}: a Dragoman translator. Replace the vendor and domain types with yours.

use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo, de};
use serde::{Deserialize, Serialize};

/// What the vendor sends.
#[derive(Deserialize)]
struct VendorMessage {
    #[serde(deserialize_with = "de::text")]
    id: String,
    kind: Option<String>,
}

/// What our domain gets.
#[derive(Serialize)]
struct Received {
    id: String,
    kind: String,
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
        let received = Received { id: vendor.id, kind: vendor.kind.unwrap_or_default() };
        Ok(vec![Event::json("example.received.v1", &received.id, &received)?])
    }
}

dragoman_guest::export!(Translator: inbound);
