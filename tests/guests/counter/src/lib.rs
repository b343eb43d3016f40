//! Counts the messages it has seen in a static: a fresh instance per message always says 1.
use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo};

struct Guest;

impl Plugin for Guest {
    fn info() -> PluginInfo {
        PluginInfo::new(env!("CARGO_PKG_NAME"), "0.0.1", "test")
    }
}

use std::sync::atomic::{AtomicU64, Ordering};

static SEEN: AtomicU64 = AtomicU64::new(0);

impl Inbound for Guest {
    fn translate(_message: &Message) -> Result<Vec<Event>, Error> {
        let seen = SEEN.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(vec![Event::json("counted.v1", "counter", &seen)?])
    }
}

dragoman_guest::export!(Guest: inbound);
