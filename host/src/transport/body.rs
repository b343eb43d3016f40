//! Reading a message request: the headers checked, the body read up to the limit. A refused
//! body is drained first, so the client gets the answer instead of a reset connection.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::BodyExt;

use crate::outcome::Refusal;
use crate::pipeline::{Incoming, check_key};

/// The most of a refused body that is read (and dropped) before answering.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads a message request: headers checked, body read up to `max_body`.
pub(super) async fn read<B>(
    headers: &HeaderMap,
    body: B,
    max_body: usize,
) -> Result<Incoming, Refusal>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display + Send,
{
    let too_large = || Refusal::TooLarge { limit: max_body };
    // The body first, so that whatever the answer, the client has finished sending.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > max_body) {
        // A client that waits for `100 Continue` has sent nothing yet: it gets the answer at
        // once (hyper sends `100 Continue` only once the body is read), and the connection
        // closes after it.
        if !expects_continue(headers) {
            drain(body).await;
        }
        return Err(too_large());
    }
    if let Some(encoding) = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|e| !e.is_empty() && e != "identity")
    {
        drain(body).await;
        return Err(Refusal::Encoded { encoding });
    }
    let mut body = body;
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Refusal::BadRequest {
            reason: format!("the body could not be read: {e}"),
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > max_body {
                drain(body).await;
                return Err(too_large());
            }
            collected.extend_from_slice(&data);
        }
    }
    if collected.is_empty() {
        return Err(Refusal::EmptyBody);
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| check_key(v.as_bytes()))
        .transpose()?;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(Incoming {
        content_type: text(header::CONTENT_TYPE.as_str()),
        traceparent: text("traceparent"),
        tracestate: text("tracestate"),
        headers,
        body: collected,
        idempotency_key,
    })
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads and drops what is left of a body that is refused: at most [`DRAIN_LIMIT`] bytes,
/// for at most 10 s.
async fn drain<B>(mut body: B)
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut seen = 0usize;
    let reading = async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), reading).await;
}
