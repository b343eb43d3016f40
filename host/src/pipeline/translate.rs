//! Translate: the route's plugin on one message, answered at once, stored nowhere. For
//! checking a plugin against a live host; nothing is claimed, committed or published.

use super::{Incoming, Pipeline, admission, transient, vendor_message};
use crate::outcome::{Cause, FAULT_CODE, Translated, Unavailable};
use crate::plugin::{Fault, TranslateError};

impl Pipeline {
    /// Translates a message with the route's plugin and stores nothing.
    pub(crate) async fn translate(&self, route: &str, incoming: Incoming) -> Translated {
        let route = match admission::admit(&self.core.routes, route, &incoming) {
            Ok(route) => route.clone(),
            Err(refusal) => return Translated::Refused(refusal),
        };
        let ran = tokio::task::spawn_blocking(move || {
            let message = vendor_message(
                uuid::Uuid::now_v7().to_string(),
                incoming.content_type,
                route.headers.keep(incoming.headers),
                incoming.body,
            );
            let version = route.version();
            let mut session = version.instances.get()?;
            let key = session.idempotency_key(&message)?;
            Ok::<_, Fault>((key, session.translate(&message)?))
        })
        .await;
        match ran {
            Ok(Ok((idempotency_key, Ok(events)))) => Translated::Events {
                idempotency_key,
                events,
            },
            Ok(Ok((_, Err(TranslateError::Rejected(failure))))) => Translated::Rejected {
                cause: Cause::Refused,
                code: failure.code,
                error: failure.message,
            },
            Ok(Ok((_, Err(TranslateError::Transient(failure))))) => {
                Translated::Transient(transient(failure))
            }
            Ok(Err(fault)) => Translated::Rejected {
                cause: Cause::Fault,
                code: FAULT_CODE.into(),
                error: fault.to_string(),
            },
            Err(_) => {
                Translated::Unavailable(Unavailable::Internal("the translate task failed".into()))
            }
        }
    }
}
