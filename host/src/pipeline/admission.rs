//! What every message passes before any plugin runs: a known route, a valid idempotency key
//! and a body some translator could read. A refusal here stores nothing: there is nothing a
//! replay could fix.

use std::sync::Arc;

use super::Incoming;
use super::routes::{Route, Routes};
use crate::outcome::Refusal;

/// The longest idempotency key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// Checks what arrives with a message before anything else runs: the caller's idempotency
/// key (raw header bytes) and the body. The HTTP transport and the fuzz target both go
/// through here.
///
/// # Errors
///
/// The [`Refusal`]: a bad key, an empty body, or a body that is not UTF-8 (or UTF-16 with a
/// byte order mark) JSON, XML or form data, by the rules the guest SDK decodes with.
pub fn check_message(
    content_type: Option<&str>,
    idempotency_key: Option<&[u8]>,
    body: &[u8],
) -> Result<(), Refusal> {
    if let Some(key) = idempotency_key {
        check_key(key)?;
    }
    check_not_empty(body)?;
    well_formed(content_type, body)
}

/// A known route and a readable body.
pub(super) fn admit<'a>(
    routes: &'a Routes,
    route: &str,
    incoming: &Incoming,
) -> Result<&'a Arc<Route>, Refusal> {
    let found = routes.get(route).ok_or_else(|| Refusal::UnknownRoute {
        route: route.to_owned(),
    })?;
    check_not_empty(&incoming.body)?;
    well_formed(incoming.content_type.as_deref(), &incoming.body)?;
    Ok(found)
}

/// A caller's `Idempotency-Key` header, checked: 1 to 255 bytes of visible ASCII.
pub(crate) fn check_key(raw: &[u8]) -> Result<String, Refusal> {
    let bad = |reason: String| Refusal::BadKey { reason };
    let key = std::str::from_utf8(raw)
        .map_err(|_| bad("the Idempotency-Key header is not visible ASCII".into()))?;
    valid_key(key).map_err(bad)?;
    Ok(key.to_owned())
}

fn check_not_empty(body: &[u8]) -> Result<(), Refusal> {
    if body.is_empty() {
        return Err(Refusal::EmptyBody);
    }
    Ok(())
}

fn well_formed(content_type: Option<&str>, body: &[u8]) -> Result<(), Refusal> {
    dragoman_body::check(body, content_type)
        .map(drop)
        .map_err(Refusal::Unreadable)
}

/// Checks an idempotency key: 1 to 255 bytes of visible ASCII.
pub(crate) fn valid_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!(
            "an idempotency key has 1 to {MAX_KEY_LEN} bytes; this one has {}",
            key.len()
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("an idempotency key is visible ASCII, without spaces".into());
    }
    Ok(())
}
