//! What a broker is told about a message, from what the host made of it: pure functions,
//! so the mapping is tested without a broker (SRC-1, SRC-2).
//!
//! - accepted, or a duplicate of a settled message: acknowledged (the answer came after the
//!   commit was durable);
//! - dead-lettered: terminated (the dead letter is durable);
//! - asked for again later (a transient refusal, a store or host that cannot now, another
//!   delivery holding the key): a negative acknowledgement *with a delay*, never a plain one,
//!   which the server redelivers at once whatever the consumer's backoff;
//! - refused at the door, or asked for again once the host has seen the message as often as
//!   its source allows: dead-lettered by the host, then terminated.

use std::time::Duration;

use crate::outcome::{Ingested, Refusal};
use crate::plugin::Failure;

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Acknowledge: it is settled, durably.
    Ack,
    /// Terminate: it is a dead letter, durably; never deliver it again.
    Term,
    /// Deliver it again after this long.
    Nak(Duration),
    /// Dead-letter it without translating it (then terminate it), with this code and text.
    GiveUp(GiveUp),
}

/// Why the host dead-letters a message itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GiveUp {
    pub(crate) code: String,
    pub(crate) message: String,
}

impl GiveUp {
    /// As the pipeline's dead letter records it.
    pub(crate) fn failure(self) -> Failure {
        Failure {
            code: self.code,
            message: self.message,
        }
    }
}

/// The shortest delay of a negative acknowledgement: a backoff configured shorter still
/// redelivers after a pause, never at once.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(100);

/// The longest: a breaker forced open holds messages for no longer at a time.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(60);

/// The code of a message dead-lettered because it was delivered as often as its source allows.
pub(crate) const MAX_DELIVER_CODE: &str = "max-deliver";

/// What a delivery's facts are: the how-manieth delivery this is, where it sits in the
/// stream, and what the source allows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    /// 1 for the first delivery.
    pub(crate) delivered: u32,
    /// Its position in the stream.
    pub(crate) sequence: u64,
    /// Deliveries before the host gives up.
    pub(crate) max_deliver: u32,
    /// The route's backoff for this delivery.
    pub(crate) backoff: Duration,
}

/// What to do with a message the pipeline answered `outcome` for.
pub(crate) fn settle(outcome: &Ingested, delivery: Delivery) -> Action {
    let again = |asked: Duration, what: &str| {
        if delivery.delivered >= delivery.max_deliver {
            Action::GiveUp(GiveUp {
                code: MAX_DELIVER_CODE.into(),
                message: format!(
                    "delivered {} times (stream sequence {}), the source's max_deliver; the \
                     last time: {what}",
                    delivery.delivered, delivery.sequence
                ),
            })
        } else {
            Action::Nak(delay(delivery.backoff.max(asked)))
        }
    };
    match outcome {
        Ingested::Accepted(_) | Ingested::Duplicate(_) => Action::Ack,
        Ingested::Rejected(_) => Action::Term,
        Ingested::Transient(transient) => again(
            transient.retry_after,
            &format!(
                "the plugin asked for it later ({}: {})",
                transient.code, transient.message
            ),
        ),
        Ingested::InFlight(_) => again(Duration::ZERO, "another delivery held its key"),
        Ingested::Unavailable(unavailable) => again(
            Duration::ZERO,
            &format!("the host could not: {unavailable:?}"),
        ),
        Ingested::KeyReused {
            idempotency_key,
            message_id,
        } => Action::GiveUp(GiveUp {
            code: "key-reused".into(),
            message: format!(
                "its key `{idempotency_key}` settled message {message_id}, whose body differs"
            ),
        }),
        Ingested::Refused(refusal) => Action::GiveUp(GiveUp {
            code: refusal_code(refusal).into(),
            message: format!("refused at the door: {}", refusal_text(refusal)),
        }),
    }
}

/// What to do once the host tried to dead-letter a message itself: it never tries twice in
/// one delivery, so anything but a settled outcome is asked for again.
pub(crate) fn after_giving_up(outcome: &Ingested, delivery: Delivery) -> Action {
    match outcome {
        Ingested::Accepted(_) | Ingested::Duplicate(_) => Action::Ack,
        Ingested::Rejected(_) => Action::Term,
        _ => Action::Nak(delay(delivery.backoff)),
    }
}

/// A delay within [`MIN_DELAY`] and [`MAX_DELAY`].
pub(crate) fn delay(wanted: Duration) -> Duration {
    wanted.clamp(MIN_DELAY, MAX_DELAY)
}

fn refusal_code(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::BadKey { .. } => "bad-key",
        Refusal::EmptyBody => "empty-body",
        Refusal::TooLarge { .. } => "too-large",
        Refusal::Unreadable(e) => e.code(),
        _ => "refused",
    }
}

fn refusal_text(refusal: &Refusal) -> String {
    match refusal {
        Refusal::BadKey { reason } => reason.clone(),
        Refusal::EmptyBody => "the body is empty".into(),
        Refusal::TooLarge { limit } => format!("the body is over {limit} bytes"),
        Refusal::Unreadable(e) => e.message().to_owned(),
        other => format!("{other:?}"),
    }
}

/// How long to hold off while every sink of a route is refused by its breaker: the shortest
/// of their refusals (the first that may let a call through); `None` when one admits, or the
/// route has no sink.
pub(crate) fn held_by_breakers(
    refusing: impl IntoIterator<Item = Option<Duration>>,
) -> Option<Duration> {
    let mut shortest: Option<Duration> = None;
    for refusing in refusing {
        let refusing = refusing?;
        shortest = Some(shortest.map_or(refusing, |s| s.min(refusing)));
    }
    shortest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Accepted, Cause, InFlight, Rejected, Settled, Transient, Unavailable};

    const DELIVERY: Delivery = Delivery {
        delivered: 1,
        sequence: 7,
        max_deliver: 3,
        backoff: Duration::from_millis(500),
    };

    fn accepted() -> Accepted {
        Accepted {
            message_id: "m".into(),
            idempotency_key: "k".into(),
            events: vec!["e".into()],
        }
    }

    #[test]
    fn settled_outcomes_are_acked_and_dead_letters_termed() {
        assert_eq!(
            settle(&Ingested::Accepted(accepted()), DELIVERY),
            Action::Ack
        );
        let duplicate = Ingested::Duplicate(Settled::Accepted(accepted()));
        assert_eq!(settle(&duplicate, DELIVERY), Action::Ack);
        let rejected = Ingested::Rejected(Rejected {
            message_id: "m".into(),
            dead_letter: "d".into(),
            cause: Cause::Refused,
            code: "unknown-status".into(),
            error: "no".into(),
        });
        assert_eq!(settle(&rejected, DELIVERY), Action::Term);
    }

    #[test]
    fn what_may_succeed_later_is_naked_with_a_delay_never_at_once() {
        let transient = Ingested::Transient(Transient {
            code: "busy".into(),
            message: "later".into(),
            retry_after: Duration::from_secs(2),
        });
        // The plugin's wait when longer than the route's backoff, else the backoff.
        assert_eq!(
            settle(&transient, DELIVERY),
            Action::Nak(Duration::from_secs(2))
        );
        for outcome in [
            Ingested::Unavailable(Unavailable::Saturated),
            Ingested::Unavailable(Unavailable::Storage("down".into())),
            Ingested::InFlight(InFlight {
                idempotency_key: "k".into(),
                taken_over: false,
            }),
        ] {
            assert_eq!(
                settle(&outcome, DELIVERY),
                Action::Nak(Duration::from_millis(500)),
                "{outcome:?}"
            );
        }
        let zero = Delivery {
            backoff: Duration::ZERO,
            ..DELIVERY
        };
        assert_eq!(
            settle(&Ingested::Unavailable(Unavailable::Saturated), zero),
            Action::Nak(MIN_DELAY),
            "a zero backoff would be a plain nak"
        );
    }

    #[test]
    fn the_last_delivery_that_would_be_naked_is_dead_lettered_with_its_sequence_and_count() {
        let last = Delivery {
            delivered: 3,
            ..DELIVERY
        };
        let Action::GiveUp(failure) = settle(&Ingested::Unavailable(Unavailable::Saturated), last)
        else {
            panic!("the last delivery is given up on");
        };
        assert_eq!(failure.code, MAX_DELIVER_CODE);
        assert!(
            failure.message.contains("delivered 3 times"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("stream sequence 7"),
            "{}",
            failure.message
        );
        // If the dead letter cannot be written, the message is asked for again (the server
        // keeps it: the consumer has no delivery limit of its own).
        assert_eq!(
            after_giving_up(&Ingested::Unavailable(Unavailable::Saturated), last),
            Action::Nak(Duration::from_millis(500))
        );
    }

    #[test]
    fn a_message_refused_at_the_door_is_dead_lettered_not_dropped() {
        let Action::GiveUp(failure) = settle(&Ingested::Refused(Refusal::EmptyBody), DELIVERY)
        else {
            panic!("a refusal is given up on");
        };
        assert_eq!(failure.code, "empty-body");
    }

    #[test]
    fn a_route_is_held_only_while_every_sink_is_refused() {
        let s = Duration::from_secs;
        assert_eq!(held_by_breakers([Some(s(30)), Some(s(5))]), Some(s(5)));
        assert_eq!(held_by_breakers([Some(s(30)), None]), None);
        assert_eq!(held_by_breakers(std::iter::empty()), None);
    }
}
