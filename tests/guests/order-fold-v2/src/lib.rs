//! A second version of `order-fold` that folds differently: an order's state is the list of
//! its event types, in the order they were applied. The host must serve it from the swap on,
//! and never start it from the first version's snapshots.
use dragoman_guest::{Projector, ProjectorInfo, Refusal, StreamEvent};

struct EventLog;

impl Projector for EventLog {
    type State = Vec<String>;

    fn info() -> ProjectorInfo {
        ProjectorInfo::new("order-fold", "2.0.0", "order")
    }

    fn initial() -> Vec<String> {
        Vec::new()
    }

    fn apply(mut seen: Vec<String>, event: &StreamEvent) -> Result<Vec<String>, Refusal> {
        if !event.event_type.starts_with("order.") {
            return Err(Refusal::new(
                "not-an-order",
                format!("{} is not about an order", event.event_type),
            ));
        }
        seen.push(event.event_type.clone());
        Ok(seen)
    }
}

dragoman_guest::export_projector!(EventLog);
