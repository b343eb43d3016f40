//! Domain events, the output of a translation.

use serde::Serialize;

use crate::__bindings::wit;
use crate::Error;

/// One event in our domain model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    event_type: String,
    subject: String,
    partition_key: String,
    data: String,
}

impl Event {
    /// An event whose payload is `data` serialized as JSON.
    ///
    /// The partition key is the subject; change it with [`Event::with_partition_key`].
    ///
    /// # Errors
    ///
    /// `rejected` with code `unserializable` when `data` cannot be written as JSON (a map
    /// with non-string keys, for example).
    pub fn json<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        subject: impl Into<String>,
        data: &T,
    ) -> Result<Self, Error> {
        let data = serde_json::to_string(data).map_err(|e| {
            Error::rejected("unserializable", format!("event payload is not JSON: {e}"))
        })?;
        let subject = subject.into();
        Ok(Self {
            event_type: event_type.into(),
            partition_key: subject.clone(),
            subject,
            data,
        })
    }

    /// Events with the same partition key reach sinks in commit order.
    pub fn with_partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = key.into();
        self
    }

    /// The event type, for example `order.created.v1`.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The entity the event is about.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The ordering key.
    pub fn partition_key(&self) -> &str {
        &self.partition_key
    }

    /// The JSON payload.
    pub fn data(&self) -> &str {
        &self.data
    }

    pub(crate) fn into_wit(self) -> wit::DomainEvent {
        wit::DomainEvent {
            event_type: self.event_type,
            subject: self.subject,
            partition_key: self.partition_key,
            data: self.data,
        }
    }
}
