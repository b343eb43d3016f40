//! Claims in flight as rows every host sees, and the owner session that keeps a host's
//! claims (and leases) alive: each store holds a session advisory lock on its owner key for
//! as long as it lives, and a claim whose owner's lock is not held is nobody's.

use std::time::Duration;

use jiff::Timestamp;
use tokio_postgres::NoTls;

use super::commit::Lock;
use super::connections::{Connections, pg_error};
use super::{record, us};
use crate::storage::{Claim, ClaimToken, Completed, StorageError};

/// Claims `key` on `route` for `owner` until `now + in_flight_timeout` (see
/// `Storage::claim`).
pub(super) async fn claim(
    pool: &Connections,
    owner: i64,
    route: &str,
    key: &str,
    now: Timestamp,
    in_flight_timeout: Duration,
) -> Result<Claim, StorageError> {
    let until = now.checked_add(in_flight_timeout).unwrap_or(Timestamp::MAX);
    // A claim that finds the key neither done nor held, yet cannot take it, met a claim
    // released or a key swept between its two statements: it tries again, a few times.
    for _ in 0..3 {
        let token: i64 = rand::random();
        let taken = pool
            .query(
                "INSERT INTO dragoman.idempotency AS i
                     (route, key, claim_token, claim_until_us, claim_owner)
                 VALUES ($1, $2, $3, $4, $6)
                 ON CONFLICT (route, key) DO UPDATE
                     SET claim_token = EXCLUDED.claim_token,
                         claim_until_us = EXCLUDED.claim_until_us,
                         claim_owner = EXCLUDED.claim_owner
                     WHERE NOT (i.completed IS NOT NULL AND i.expires_us > $5)
                       AND NOT (i.claim_token IS NOT NULL AND i.claim_until_us > $5
                                AND dragoman.owner_alive(i.claim_owner))
                 RETURNING claim_token",
                &[&route, &key, &token, &us(until), &us(now), &owner],
            )
            .await?;
        if !taken.is_empty() {
            return Ok(Claim::Fresh(ClaimToken {
                route: route.into(),
                key: key.into(),
                token: token as u64,
            }));
        }
        let rows = pool
            .query(
                "SELECT completed, expires_us,
                        CASE WHEN dragoman.owner_alive(claim_owner) THEN claim_until_us END
                 FROM dragoman.idempotency WHERE route = $1 AND key = $2",
                &[&route, &key],
            )
            .await?;
        let Some(row) = rows.first() else { continue };
        let completed: Option<Vec<u8>> = row.get(0);
        let expires: Option<i64> = row.get(1);
        let claim_until: Option<i64> = row.get(2);
        if let (Some(bytes), Some(expires)) = (completed, expires)
            && expires > us(now)
        {
            let completed: Completed = record("idempotency key", key, &bytes)?;
            return Ok(Claim::Done(completed));
        }
        if claim_until.is_some_and(|until| until > us(now)) {
            return Ok(Claim::InFlight);
        }
    }
    Ok(Claim::InFlight)
}

/// Gives `claim` up: its row goes when the key was never done, else only the claim.
pub(super) async fn release(pool: &Connections, claim: &ClaimToken) -> Result<(), StorageError> {
    let token = claim.token as i64;
    let gone = pool
        .execute(
            "DELETE FROM dragoman.idempotency
             WHERE route = $1 AND key = $2 AND claim_token = $3 AND completed IS NULL",
            &[&claim.route, &claim.key, &token],
        )
        .await?;
    if gone == 0 {
        pool.execute(
            "UPDATE dragoman.idempotency SET claim_token = NULL, claim_until_us = NULL
             WHERE route = $1 AND key = $2 AND claim_token = $3",
            &[&claim.route, &claim.key, &token],
        )
        .await?;
    }
    Ok(())
}

/// A new claim owner key.
pub(super) fn new_owner() -> i64 {
    Lock::Owner.key(&format!("{:x}", rand::random::<u64>()))
}

/// Opens the session that holds `owner`'s advisory lock, and takes it.
pub(super) async fn own_claims(
    config: &tokio_postgres::Config,
    owner: i64,
) -> Result<tokio_postgres::Client, StorageError> {
    let (session, connection) = config.connect(NoTls).await.map_err(pg_error)?;
    tokio::spawn(connection);
    session
        .execute("SELECT pg_advisory_lock($1)", &[&owner])
        .await
        .map_err(pg_error)?;
    Ok(session)
}
