//! Allocates until something stops it: the host's memory cap must.
use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo};

struct Guest;

impl Plugin for Guest {
    fn info() -> PluginInfo {
        PluginInfo::new(env!("CARGO_PKG_NAME"), "0.0.1", "test")
    }
}

impl Inbound for Guest {
    fn translate(_message: &Message) -> Result<Vec<Event>, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(core::hint::black_box(vec![7u8; 1 << 20]));
        }
    }
}

dragoman_guest::export!(Guest: inbound);
