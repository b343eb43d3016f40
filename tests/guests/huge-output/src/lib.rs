//! Returns 4 MiB of events: over the host's output cap, under its memory cap.
use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo};

struct Guest;

impl Plugin for Guest {
    fn info() -> PluginInfo {
        PluginInfo::new(env!("CARGO_PKG_NAME"), "0.0.1", "test")
    }
}

impl Inbound for Guest {
    fn translate(_message: &Message) -> Result<Vec<Event>, Error> {
        let payload = "x".repeat(64 << 10);
        (0..64)
            .map(|n| Event::json("big.v1", n.to_string(), &payload))
            .collect()
    }
}

dragoman_guest::export!(Guest: inbound);
