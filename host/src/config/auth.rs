//! A route's door, `[routes.NAME.auth]`: the credential a vendor's messages must carry. One
//! of a bearer token (several, so that a secret can rotate), a basic user and password, or a
//! Standard Webhooks secret with the tolerance on the signed timestamp; every secret in the
//! config's secret forms. The checks themselves are in `door.rs`.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::secret::{RawSecret, Secret};

/// By default, a Standard Webhooks timestamp may be this far from the host's clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    bearer: Option<Vec<RawSecret>>,
    basic: Option<RawBasic>,
    standard_webhooks: Option<RawStandardWebhooks>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    user: String,
    password: RawSecret,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStandardWebhooks {
    secret: RawSecret,
    tolerance_secs: Option<u64>,
}

/// What a route's messages must carry to be let in.
#[derive(Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// `Authorization: Bearer` and one of these tokens.
    Bearer(Vec<Secret>),
    /// `Authorization: Basic` with this user and password.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
    /// A Standard Webhooks signature under this secret (`whsec_` and base64), its timestamp
    /// at most `tolerance` from the host's clock.
    StandardWebhooks {
        /// The shared secret.
        secret: Secret,
        /// How far the signed timestamp may be from now, either way.
        tolerance: Duration,
    },
}

impl RouteAuth {
    /// The scheme's name, for the topology and logs (never a secret).
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Bearer(_) => "bearer",
            Self::Basic { .. } => "basic",
            Self::StandardWebhooks { .. } => "standard_webhooks",
        }
    }
}

impl std::fmt::Debug for RouteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RouteAuth({}, [redacted])", self.scheme())
    }
}

impl RawAuth {
    pub(super) fn check(self, route: &str, base: &Path) -> Result<RouteAuth, String> {
        let what = |key: &str| format!("routes.{route}.auth.{key}");
        match (self.bearer, self.basic, self.standard_webhooks) {
            (Some(tokens), None, None) => {
                if tokens.is_empty() {
                    return Err(format!("{} lists no token", what("bearer")));
                }
                let tokens = tokens
                    .into_iter()
                    .map(|t| t.resolve(base, &what("bearer")))
                    .collect::<Result<_, _>>()?;
                Ok(RouteAuth::Bearer(tokens))
            }
            (None, Some(basic), None) => {
                if basic.user.is_empty() || basic.user.contains(':') {
                    return Err(format!("{} is empty or holds a `:`", what("basic.user")));
                }
                Ok(RouteAuth::Basic {
                    user: basic.user,
                    password: basic.password.resolve(base, &what("basic.password"))?,
                })
            }
            (None, None, Some(signed)) => Ok(RouteAuth::StandardWebhooks {
                secret: signed
                    .secret
                    .resolve(base, &what("standard_webhooks.secret"))?,
                tolerance: signed
                    .tolerance_secs
                    .map_or(DEFAULT_TOLERANCE, Duration::from_secs),
            }),
            _ => Err(format!(
                "routes.{route}.auth takes exactly one of bearer, basic and standard_webhooks"
            )),
        }
    }
}
