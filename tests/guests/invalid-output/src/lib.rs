//! Written against the WIT directly, without the SDK, and returns an event whose payload is
//! not JSON: the host must refuse the output. A body `type:T|subject:S` returns an event of
//! type T about S instead, with a JSON payload: the host checks the contract's naming rules.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "dragoman:translator/inbound-translator",
    generate_all,
});

use dragoman::translator::types::{DomainEvent, PluginInfo, TranslateError, VendorMessage};
use exports::dragoman::translator::{inbound, metadata};

struct Guest;

impl metadata::Guest for Guest {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "invalid-output".into(),
            version: "0.0.1".into(),
            vendor_api_version: "test".into(),
        }
    }
}

impl inbound::Guest for Guest {
    fn idempotency_key(_message: VendorMessage) -> Option<String> {
        None
    }

    fn translate(message: VendorMessage) -> Result<Vec<DomainEvent>, TranslateError> {
        let body = String::from_utf8_lossy(&message.body);
        if let Some(rest) = body.strip_prefix("type:") {
            let (event_type, subject) = rest.split_once("|subject:").unwrap_or((rest, "s"));
            return Ok(vec![DomainEvent {
                event_type: event_type.into(),
                subject: subject.into(),
                partition_key: "s".into(),
                data: "{}".into(),
            }]);
        }
        Ok(vec![DomainEvent {
            event_type: "broken.v1".into(),
            subject: "s".into(),
            partition_key: "s".into(),
            data: "{not json".into(),
        }])
    }
}

export!(Guest);
