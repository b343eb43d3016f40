//! A bad new version of `acme-erp-orders`: it derives the keys as v1 does, then refuses
//! every order whose id ends in an even digit (a schema it misreads). A canary of it must be
//! rolled back by itself, and the orders it failed must replay through the good version.
use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo};

struct Guest;

impl Plugin for Guest {
    fn info() -> PluginInfo {
        PluginInfo::new("acme-erp-orders", "3.0.0-broken", "acme-erp/v1")
    }
}

impl Inbound for Guest {
    fn idempotency_key(message: &Message) -> Option<String> {
        acme_erp_v1::key_of(message)
    }

    fn translate(message: &Message) -> Result<Vec<Event>, Error> {
        let key = acme_erp_v1::key_of(message).unwrap_or_default();
        if key.ends_with(['0', '2', '4', '6', '8']) {
            return Err(Error::rejected(
                "schema-drift",
                format!("cannot read {key}: the broken version misreads it"),
            ));
        }
        acme_erp_v1::translate_in(message, acme_erp_v1::DEFAULT_CURRENCY)
    }
}

dragoman_guest::export!(Guest: inbound);
