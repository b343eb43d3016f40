//! Claims in flight, held in memory and never written: one process holds a data dir (sled's
//! lock), so a claim cannot outlive its process, and the only write an ingest pays for is its
//! commit. They have a lock of their own, not the writer's, so that taking a claim never
//! waits behind another message's commit.
//!
//! Without the writer lock, two rules keep a key from being processed twice. A claim is
//! decided with the key's stored outcome read under this lock. A commit marks its claim as
//! committing before it writes (a claim past its timeout cannot then be taken over) and drops
//! it only once the write is visible. So a claim taken while a commit writes finds the key in
//! flight, and one taken after finds the outcome: never neither.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;

use crate::storage::{Claim, ClaimToken, Completed, StorageError};

/// (route, key) to its holder.
type Held = HashMap<(String, String), Holder>;

#[derive(Debug, Default)]
pub(super) struct Claims(Mutex<Held>);

#[derive(Debug, Clone, Copy)]
struct Holder {
    token: u64,
    until: Timestamp,
    /// Its commit is being written: it is neither taken over nor swept meanwhile.
    committing: bool,
}

impl Holder {
    fn live(&self, now: Timestamp) -> bool {
        self.committing || self.until > now
    }
}

impl Claims {
    fn lock(&self) -> MutexGuard<'_, Held> {
        // Every change is a single map operation: a panic leaves nothing half done.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `key` on `route` unless `done` finds its outcome or a live claim holds it.
    pub(super) fn claim(
        &self,
        route: &str,
        key: &str,
        now: Timestamp,
        in_flight_timeout: Duration,
        done: impl FnOnce() -> Result<Option<Completed>, StorageError>,
    ) -> Result<Claim, StorageError> {
        let mut held = self.lock();
        if let Some(completed) = done()? {
            return Ok(Claim::Done(completed));
        }
        let id = (route.to_owned(), key.to_owned());
        if held.get(&id).is_some_and(|h| h.live(now)) {
            return Ok(Claim::InFlight);
        }
        let token = rand::random();
        let until = now.checked_add(in_flight_timeout).unwrap_or(Timestamp::MAX);
        held.insert(
            id,
            Holder {
                token,
                until,
                committing: false,
            },
        );
        Ok(Claim::Fresh(ClaimToken {
            route: route.into(),
            key: key.into(),
            token,
        }))
    }

    /// Gives `claim` up if it is still the current one.
    pub(super) fn release(&self, claim: &ClaimToken) {
        let mut held = self.lock();
        let id = (claim.route.clone(), claim.key.clone());
        if held
            .get(&id)
            .is_some_and(|h| h.token == claim.token && !h.committing)
        {
            held.remove(&id);
        }
    }

    /// Starts the commit of (`route`, `key`): with `claim`, it must be the current one;
    /// without (a replay, which holds none), the commit settles the key whoever claimed it.
    pub(super) fn commit(
        &self,
        route: &str,
        key: &str,
        claim: Option<&ClaimToken>,
    ) -> Result<Committing<'_>, StorageError> {
        let id = (route.to_owned(), key.to_owned());
        let token = match claim {
            Some(claim) => {
                let mut held = self.lock();
                match held.get_mut(&id) {
                    Some(h) if h.token == claim.token && !h.committing => {
                        h.committing = true;
                        Some(claim.token)
                    }
                    _ => {
                        return Err(StorageError::ClaimLost {
                            key: claim.key.clone(),
                        });
                    }
                }
            }
            None => None,
        };
        Ok(Committing {
            claims: self,
            id,
            token,
            written: false,
        })
    }

    /// Forgets claims past their timeout whose commits are not being written.
    pub(super) fn forget_expired(&self, now: Timestamp) {
        self.lock().retain(|_, h| h.live(now));
    }
}

/// A commit under way. [`Committing::written`] drops the claim once the write is visible;
/// dropped unwritten, the claim is the caller's again (to release, or to time out).
#[derive(Debug)]
pub(super) struct Committing<'a> {
    claims: &'a Claims,
    id: (String, String),
    /// The claim being committed; `None` for a replay.
    token: Option<u64>,
    written: bool,
}

impl Committing<'_> {
    pub(super) fn written(mut self) {
        self.written = true;
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        let mut held = self.claims.lock();
        match (self.token, held.get_mut(&self.id)) {
            // The key is settled: a claim on it has nothing left to do, unless it is
            // another's commit being written.
            (Some(token), Some(h)) if self.written && h.token == token => {
                held.remove(&self.id);
            }
            (None, Some(h)) if self.written && !h.committing => {
                held.remove(&self.id);
            }
            (Some(token), Some(h)) if h.token == token => h.committing = false,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("in range")
    }

    fn fresh(claims: &Claims, now: Timestamp) -> ClaimToken {
        match claims.claim("r", "k", now, TIMEOUT, || Ok(None)) {
            Ok(Claim::Fresh(token)) => token,
            other => panic!("expected a fresh claim, got {other:?}"),
        }
    }

    #[test]
    fn a_claim_being_committed_is_in_flight_even_past_its_timeout() {
        let claims = Claims::default();
        let token = fresh(&claims, at(0));
        let committing = claims.commit("r", "k", Some(&token)).expect("current");
        let late = claims.claim("r", "k", at(60), TIMEOUT, || Ok(None));
        assert!(matches!(late, Ok(Claim::InFlight)), "{late:?}");
        claims.forget_expired(at(60));
        assert!(matches!(
            claims.claim("r", "k", at(61), TIMEOUT, || Ok(None)),
            Ok(Claim::InFlight)
        ));
        // Written: the claim is gone, and the next claim is decided by the stored outcome.
        committing.written();
        let next = claims.claim("r", "k", at(62), TIMEOUT, || Ok(None));
        assert!(matches!(next, Ok(Claim::Fresh(_))), "{next:?}");
    }

    #[test]
    fn a_commit_that_was_not_written_leaves_the_claim_to_its_holder() {
        let claims = Claims::default();
        let token = fresh(&claims, at(0));
        drop(claims.commit("r", "k", Some(&token)).expect("current"));
        // Still held and live: another delivery finds it in flight, then its holder releases.
        assert!(matches!(
            claims.claim("r", "k", at(1), TIMEOUT, || Ok(None)),
            Ok(Claim::InFlight)
        ));
        claims.release(&token);
        let again = fresh(&claims, at(2));
        // A claim taken over after its timeout cannot commit: the key is another's now.
        let taken = fresh(&claims, at(40));
        assert!(matches!(
            claims.commit("r", "k", Some(&again)),
            Err(StorageError::ClaimLost { .. })
        ));
        claims
            .commit("r", "k", Some(&taken))
            .expect("current")
            .written();
    }

    #[test]
    fn a_replay_settles_the_key_but_leaves_a_commit_under_way_alone() {
        let claims = Claims::default();
        let token = fresh(&claims, at(0));
        let committing = claims.commit("r", "k", Some(&token)).expect("current");
        claims.commit("r", "k", None).expect("a replay").written();
        assert!(matches!(
            claims.claim("r", "k", at(1), TIMEOUT, || Ok(None)),
            Ok(Claim::InFlight)
        ));
        committing.written();
        // Settled and not under way: a replay's commit drops a live claim on the key.
        fresh(&claims, at(2));
        claims.commit("r", "k", None).expect("a replay").written();
        assert!(matches!(
            claims.claim("r", "k", at(3), TIMEOUT, || Ok(None)),
            Ok(Claim::Fresh(_))
        ));
    }

    #[test]
    fn the_stored_outcome_comes_before_a_live_claim_and_a_failed_read_claims_nothing() {
        use crate::outcome::{Accepted, Settled};
        let claims = Claims::default();
        let token = fresh(&claims, at(0));
        let completed = Completed {
            fingerprint: "f".into(),
            settled: Settled::Accepted(Accepted {
                message_id: "m".into(),
                idempotency_key: "k".into(),
                events: vec![],
            }),
            expires_at: at(100),
        };
        let done = claims.claim("r", "k", at(1), TIMEOUT, || Ok(Some(completed.clone())));
        assert!(matches!(done, Ok(Claim::Done(c)) if c == completed));
        claims.release(&token);
        let failed = claims.claim("r", "k", at(2), TIMEOUT, || {
            Err(StorageError::Backend("the read failed".into()))
        });
        assert!(
            matches!(failed, Err(StorageError::Backend(_))),
            "{failed:?}"
        );
        fresh(&claims, at(3));
    }
}
