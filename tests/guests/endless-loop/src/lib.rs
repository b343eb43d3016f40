//! Spins forever: the host must interrupt it at the deadline.
use dragoman_guest::{Error, Event, Inbound, Message, Plugin, PluginInfo};

struct Guest;

impl Plugin for Guest {
    fn info() -> PluginInfo {
        PluginInfo::new(env!("CARGO_PKG_NAME"), "0.0.1", "test")
    }
}

impl Inbound for Guest {
    fn translate(_message: &Message) -> Result<Vec<Event>, Error> {
        let mut n: u64 = 0;
        loop {
            n = core::hint::black_box(n.wrapping_add(1));
        }
    }
}

dragoman_guest::export!(Guest: inbound);
