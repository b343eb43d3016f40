//! ACME ERP orders, vendor API v1, into the domain `Order`: the translation itself is the
//! `acme-erp-v1` library's (the vendor's model and its rules), which this crate exports as a
//! plugin.
//!
//! The vendor sends `{ord_id, ord_status: "O"|"C"|"X", line_items: [{sku, qty, unit_prc}]}`
//! as JSON, XML or form data. Prices are decimal numbers in major units of the currency set
//! by the route's plugin config key `currency` (EUR when unset), rounded half to even to the
//! currency's minor unit. No floating point number is involved.

use acme_erp_v1::DEFAULT_CURRENCY;
use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo};

struct AcmeErpOrders;

impl Plugin for AcmeErpOrders {
    fn info() -> PluginInfo {
        PluginInfo::new("acme-erp-orders", env!("CARGO_PKG_VERSION"), "acme-erp/v1")
    }
}

impl Inbound for AcmeErpOrders {
    fn idempotency_key(message: &Message) -> Option<String> {
        acme_erp_v1::key_of(message)
    }

    fn translate(message: &Message) -> Result<Vec<Event>, Error> {
        let currency =
            dragoman_guest::config::get("currency").unwrap_or_else(|| DEFAULT_CURRENCY.to_owned());
        acme_erp_v1::translate_in(message, &currency)
    }
}

dragoman_guest::export!(AcmeErpOrders: inbound);
