//! Panics with a message that the host must report.
use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo};

struct Guest;

impl Plugin for Guest {
    fn info() -> PluginInfo {
        PluginInfo::new(env!("CARGO_PKG_NAME"), "0.0.1", "test")
    }
}

impl Inbound for Guest {
    fn translate(message: &Message) -> Result<Vec<Event>, Error> {
        panic!("boom: cannot handle message {}", message.id());
    }
}

dragoman_guest::export!(Guest: inbound);
