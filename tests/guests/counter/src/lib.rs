//! Counts the messages it has seen in a static: a fresh instance per message always says 1.
//! A body of `panic` makes it panic.
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
    fn translate(message: &Message) -> Result<Vec<Event>, Error> {
        let seen = SEEN.fetch_add(1, Ordering::SeqCst) + 1;
        if message.body() == b"panic" {
            panic!("asked to panic after {seen} messages");
        }
        Ok(vec![Event::json("counted.v1", "counter", &seen)?])
    }
}

dragoman_guest::export!(Guest: inbound);
