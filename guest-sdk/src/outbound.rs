//! The outbound direction's types: a domain command, the vendor request made from it and the
//! vendor's response.

use serde::de::DeserializeOwned;

use crate::__bindings::wit;
use crate::decode::{self, Document};
use crate::{Error, Header};

/// A command of our domain model.
#[derive(Debug, Clone)]
pub struct Command {
    /// What to do, for example `shipment.book.v1`.
    pub command_type: String,
    /// The entity the command is about.
    pub subject: String,
    /// The payload, one JSON document.
    pub data: String,
}

impl Command {
    pub(crate) fn from_wit(command: wit::DomainCommand) -> Self {
        Self {
            command_type: command.command_type,
            subject: command.subject,
            data: command.data,
        }
    }

    /// Deserializes the payload into `T`.
    ///
    /// # Errors
    ///
    /// `rejected` when the payload does not fit `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        decode::deserialize(decode::decode(
            self.data.as_bytes(),
            Some("application/json"),
        )?)
    }
}

/// An HTTP request in the vendor's model.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method, upper case.
    pub method: String,
    /// Path and query, relative to the route's vendor base URL.
    pub path: String,
    /// Headers to send.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: &str, path: impl Into<String>) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Marks a request whose method is not idempotent (`POST`, `PATCH`) as safe to send
    /// again after a timeout, a connection error, a 5xx or a 429: say so only when the
    /// vendor deduplicates by the `Idempotency-Key` header, which the host sets to the
    /// command's key on every attempt. `GET`, `HEAD`, `PUT`, `DELETE` and `OPTIONS` are
    /// retried without it. (The mark is the request header `dragoman-retry: safe`, which the
    /// host does not send on.)
    pub fn retry_safe(self) -> Self {
        self.header("dragoman-retry", "safe")
    }

    /// Sets a JSON body and its content type.
    ///
    /// # Errors
    ///
    /// `rejected` with code `unserializable` when `body` cannot be written as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(self, body: &T) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            Error::rejected("unserializable", format!("request body is not JSON: {e}"))
        })?;
        let mut request = self.header("content-type", "application/json");
        request.body = bytes;
        Ok(request)
    }

    pub(crate) fn into_wit(self) -> wit::VendorRequest {
        wit::VendorRequest {
            method: self.method,
            path: self.path,
            headers: self.headers,
            body: self.body,
        }
    }
}

/// The vendor's answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Every header, in order.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn from_wit(response: wit::VendorResponse) -> Self {
        Self {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }

    /// The first header named `name`, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Decodes the body and deserializes it into `T`, as [`Message::parse`](crate::Message::parse) does.
    ///
    /// # Errors
    ///
    /// `rejected` with the codes listed in [`decode`](mod@crate::decode).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        decode::parse(&self.body, self.header("content-type"))
    }

    /// Decodes the body by looking at its bytes, as [`Message::decode`](crate::Message::decode) does.
    ///
    /// # Errors
    ///
    /// `rejected` with the codes listed in [`decode`](mod@crate::decode).
    pub fn decode(&self) -> Result<Document, Error> {
        decode::decode(&self.body, self.header("content-type"))
    }
}
