//! A projector that misbehaves on cue: it counts events, panics on `order.trap.v1` and spins
//! forever on `order.loop.v1`. The host must contain each as a fault of the read, and serve
//! the next read.
use dragoman_guest::{Projector, ProjectorInfo, Refusal, StreamEvent};

struct BadFold;

impl Projector for BadFold {
    type State = u64;

    fn info() -> ProjectorInfo {
        ProjectorInfo::new("bad-fold", "0.0.1", "order")
    }

    fn initial() -> u64 {
        0
    }

    fn apply(count: u64, event: &StreamEvent) -> Result<u64, Refusal> {
        match event.event_type.as_str() {
            "order.trap.v1" => panic!("the fold fell over on event {}", event.seq),
            "order.loop.v1" => {
                let mut n: u64 = 0;
                loop {
                    n = core::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => Ok(count + 1),
        }
    }
}

dragoman_guest::export_projector!(BadFold);
