//! Authentication at a route's door (`[routes.NAME.auth]`): a bearer token or a basic user
//! and password is checked from the request head, before the body is read; a Standard
//! Webhooks signature once the body is read. Both come before the message reaches the
//! pipeline, so a failure stores nothing, derives no key and runs no plugin: it is a `401`,
//! counted per route (`door_refused_total`). Secrets are compared in constant time, and
//! never logged; the credential headers are never kept with a message (`pipeline/headers.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use subtle::ConstantTimeEq as _;

use crate::clock::Clock;
use crate::config::{Config, RouteAuth, Secret};
use crate::outcome::Refusal;
use crate::telemetry::Metrics;
use crate::webhooks::Signer;

/// Every route's door. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Doors {
    routes: Arc<BTreeMap<String, Door>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Doors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doors")
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What one route checks.
enum Door {
    Bearer(Vec<Secret>),
    /// `user:password`, as a basic credential decodes.
    Basic(Vec<u8>),
    Signed {
        signer: Signer,
        tolerance: std::time::Duration,
    },
}

impl Door {
    fn scheme(&self) -> &'static str {
        match self {
            Self::Bearer(_) => "bearer",
            Self::Basic(_) => "basic",
            Self::Signed { .. } => "standard_webhooks",
        }
    }
}

impl Doors {
    /// The doors of the routes that have `auth`.
    ///
    /// # Errors
    ///
    /// A message naming the route when a Standard Webhooks secret is not `whsec_` and base64.
    pub(crate) fn new(
        config: &Config,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let mut routes = BTreeMap::new();
        for (name, route) in &config.routes {
            let door = match &route.auth {
                None => continue,
                Some(RouteAuth::Bearer(tokens)) => Door::Bearer(tokens.clone()),
                Some(RouteAuth::Basic { user, password }) => {
                    Door::Basic(format!("{user}:{}", password.expose()).into_bytes())
                }
                Some(RouteAuth::StandardWebhooks { secret, tolerance }) => Door::Signed {
                    signer: Signer::new(secret)
                        .map_err(|e| format!("routes.{name}.auth.standard_webhooks: {e}"))?,
                    tolerance: *tolerance,
                },
            };
            routes.insert(name.clone(), door);
        }
        Ok(Self {
            routes: Arc::new(routes),
            clock,
            metrics,
        })
    }

    /// What can be checked before the body is read: a bearer or basic credential.
    ///
    /// # Errors
    ///
    /// [`Refusal::Unauthenticated`] when the credential is missing or wrong.
    pub(crate) fn before_body(&self, route: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(door) = self.routes.get(route) else {
            return Ok(());
        };
        let given = |scheme: &str| {
            let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
            let space = value.iter().position(|b| *b == b' ')?;
            let (name, credentials) = value.split_at(space);
            name.eq_ignore_ascii_case(scheme.as_bytes())
                .then(|| credentials.trim_ascii().to_vec())
        };
        let verdict = match door {
            Door::Bearer(tokens) => match given("bearer") {
                None => Err("no `Authorization: Bearer` credential"),
                // Every token compared, whatever matched: the time says nothing of which.
                Some(token) => tokens
                    .iter()
                    .fold(subtle::Choice::from(0), |found, t| {
                        found | token.ct_eq(t.expose().as_bytes())
                    })
                    .into_bool_or("the bearer token is not one of the route's"),
            },
            Door::Basic(expected) => match given("basic") {
                None => Err("no `Authorization: Basic` credential"),
                Some(encoded) => match STANDARD.decode(encoded) {
                    Ok(pair) => pair
                        .ct_eq(expected)
                        .into_bool_or("the user and password are not the route's"),
                    Err(_) => Err("the basic credential is not base64"),
                },
            },
            Door::Signed { .. } => Ok(()),
        };
        self.judge(route, door, verdict)
    }

    /// What needs the body: a Standard Webhooks signature, and its timestamp's age.
    ///
    /// # Errors
    ///
    /// [`Refusal::Unauthenticated`] when a header is missing, the timestamp is outside the
    /// tolerance, or no signature matches.
    pub(crate) fn with_body(
        &self,
        route: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let Some(door) = self.routes.get(route) else {
            return Ok(());
        };
        let Door::Signed { signer, tolerance } = door else {
            return Ok(());
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let verdict = match (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) {
            (Some(id), Some(timestamp), Some(signatures)) => match timestamp.parse::<i64>() {
                Err(_) => Err("`webhook-timestamp` is not Unix seconds"),
                Ok(at) => {
                    let now = self.clock.now().as_second();
                    let skew = now.abs_diff(at);
                    if skew > tolerance.as_secs() {
                        Err("`webhook-timestamp` is outside the route's tolerance")
                    } else if signer.verifies(id, timestamp, body, signatures) {
                        Ok(())
                    } else {
                        Err("no `webhook-signature` matches the body under the route's secret")
                    }
                }
            },
            _ => Err(
                "the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers are required",
            ),
        };
        self.judge(route, door, verdict)
    }

    fn judge(&self, route: &str, door: &Door, verdict: Result<(), &str>) -> Result<(), Refusal> {
        verdict.map_err(|reason| {
            self.metrics.door_refused(route);
            tracing::debug!(route, scheme = door.scheme(), reason, "refused at the door");
            Refusal::Unauthenticated {
                route: route.to_owned(),
                scheme: door.scheme(),
                reason: reason.to_owned(),
            }
        })
    }
}

/// A constant-time verdict as a result.
trait IntoBoolOr {
    fn into_bool_or(self, reason: &'static str) -> Result<(), &'static str>;
}

impl IntoBoolOr for subtle::Choice {
    fn into_bool_or(self, reason: &'static str) -> Result<(), &'static str> {
        if bool::from(self) {
            Ok(())
        } else {
            Err(reason)
        }
    }
}

#[cfg(test)]
mod tests;
