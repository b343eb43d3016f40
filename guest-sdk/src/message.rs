//! The vendor message as the plugin sees it.

use serde::de::DeserializeOwned;

use crate::__bindings::wit;
use crate::Error;
use crate::decode::{self, Document};

/// One header as the vendor sent it.
pub use wit::Header;

/// A message in the vendor's model.
#[derive(Debug, Clone)]
pub struct Message {
    id: String,
    content_type: Option<String>,
    headers: Vec<Header>,
    body: Vec<u8>,
}

impl Message {
    /// A message built by hand, for a plugin's own unit tests.
    pub fn new(
        id: impl Into<String>,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            id: id.into(),
            content_type: content_type.map(str::to_owned),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub(crate) fn from_wit(message: wit::VendorMessage) -> Self {
        Self {
            id: message.id,
            content_type: message.content_type,
            headers: message.headers,
            body: message.body,
        }
    }

    /// The host's id for the message, also its correlation id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The media type the vendor declared; a hint only.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// Every header, in the order received.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The first header named `name`, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The body, byte for byte.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Decodes the body by looking at its bytes: JSON, XML or form data, whatever the
    /// declared content type says.
    ///
    /// # Errors
    ///
    /// `rejected` with the codes listed in [`decode`](mod@crate::decode).
    pub fn decode(&self) -> Result<Document, Error> {
        decode::decode(&self.body, self.content_type())
    }

    /// Decodes the body and deserializes it into `T`.
    ///
    /// XML and form bodies carry every value as text: use the helpers in
    /// [`de`](crate::de) for numbers and lists so one struct reads all three formats.
    ///
    /// # Errors
    ///
    /// The decoding errors of [`Message::decode`], then `rejected` with code
    /// `missing-field`, `invalid-value` or `invalid-payload` when the document does not fit `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        decode::parse(&self.body, self.content_type())
    }
}
