//! The console's sessions: a login gives the browser a random session id in a cookie
//! (`HttpOnly`, `SameSite=Strict`, path `/console`), never the admin token itself, and each
//! session has a CSRF token of its own that every form of its pages carries back.
//!
//! Held in memory, bounded: at most [`MAX_SESSIONS`], each for [`LIFETIME`] from its login;
//! a login beyond the bound ends the oldest session. A restart ends every session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq as _;

/// The cookie's name.
pub(super) const COOKIE: &str = "dragoman_console";
/// Sessions held at once.
pub(super) const MAX_SESSIONS: usize = 64;
/// How long a session lasts after its login.
pub(super) const LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// One logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Session {
    /// The id the cookie carries.
    pub(super) id: String,
    /// What every form posts back.
    pub(super) csrf: String,
    started: Instant,
}

/// The sessions of one host.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session, started at `now`.
    pub(super) fn start(&self, now: Instant) -> Session {
        let session = Session {
            id: random_token(),
            csrf: random_token(),
            started: now,
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| now.duration_since(s.started) < LIFETIME);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .values()
                .min_by_key(|s| s.started)
                .map(|s| s.id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(session.id.clone(), session.clone());
        session
    }

    /// The session the request's `Cookie` header names, if it is live at `now`.
    pub(super) fn find(&self, cookies: Option<&str>, now: Instant) -> Option<Session> {
        let id = cookie(cookies?, COOKIE)?;
        let sessions = self.lock();
        let session = sessions.get(id)?;
        (now.duration_since(session.started) < LIFETIME).then(|| session.clone())
    }

    /// Ends the session `id`.
    pub(super) fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Session {
    /// Whether `given` is this session's CSRF token (compared in constant time).
    pub(super) fn csrf_matches(&self, given: Option<&str>) -> bool {
        given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes())))
    }

    /// The `Set-Cookie` value that gives the browser this session.
    pub(super) fn set_cookie(&self) -> String {
        format!(
            "{COOKIE}={}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
            self.id,
            LIFETIME.as_secs()
        )
    }
}

/// The `Set-Cookie` value that removes the session's cookie.
pub(super) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`).
pub(super) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// 32 random bytes in hex.
fn random_token() -> String {
    crate::hex::encode(&rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends_or_expires() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let session = sessions.start(now);
        let header = format!("other=1; {COOKIE}={}", session.id);
        assert_eq!(sessions.find(Some(&header), now), Some(session.clone()));
        assert_eq!(sessions.find(Some("other=1"), now), None);
        assert_eq!(sessions.find(Some(&format!("{COOKIE}=forged")), now), None);
        assert_eq!(sessions.find(Some(&header), now + LIFETIME), None);
        sessions.end(&session.id);
        assert_eq!(sessions.find(Some(&header), now), None);
    }

    #[test]
    fn the_csrf_token_is_the_session_s_own_and_sessions_are_bounded() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let first = sessions.start(now);
        let second = sessions.start(now + Duration::from_secs(1));
        assert!(first.csrf_matches(Some(&first.csrf)));
        assert!(!first.csrf_matches(Some(&second.csrf)));
        assert!(!first.csrf_matches(None));
        assert!(!first.csrf_matches(Some("")));
        for n in 0..MAX_SESSIONS {
            sessions.start(now + Duration::from_secs(2 + n as u64));
        }
        let cookie = |s: &Session| format!("{COOKIE}={}", s.id);
        assert_eq!(
            sessions.find(Some(&cookie(&first)), now),
            None,
            "the oldest ended"
        );
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
    }
}
