//! The sinks as the file gives them (`[sinks.NAME]`, `type = "http"` or `"nats"`) and as the
//! host runs on them: a webhook's URL, credentials, TLS trust and signing secret, a NATS
//! subject, and every sink's circuit breaker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::breaker::RawBreaker;
use super::secret::{self, RawSecret, Secret, SinkUrl};
use crate::breaker::BreakerConfig;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawSink {
    Http {
        url: RawSecret,
        timeout_ms: Option<u64>,
        bearer_token: Option<RawSecret>,
        basic: Option<RawBasic>,
        #[serde(default)]
        headers: BTreeMap<String, RawSecret>,
        ca_file: Option<PathBuf>,
        signing_secret: Option<RawSecret>,
        #[serde(default)]
        breaker: RawBreaker,
    },
    Nats {
        url: RawSecret,
        stream: String,
        subject: String,
        #[serde(default)]
        breaker: RawBreaker,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasic {
    user: String,
    password: RawSecret,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// An HTTP webhook, CloudEvents binary mode.
    Http(HttpSink),
    /// A NATS JetStream subject.
    Nats {
        /// The server, `nats://host:port`.
        url: String,
        /// The stream that must hold the subject.
        stream: String,
        /// The subject events are published on.
        subject: String,
    },
}

/// A webhook sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSink {
    /// The URL events are POSTed to, `http://` or `https://` (without userinfo: that is
    /// `auth`).
    pub url: SinkUrl,
    /// How long one delivery may take.
    pub timeout: Duration,
    /// How deliveries authenticate.
    pub auth: Option<SinkAuth>,
    /// Headers sent with every delivery (API keys), lowercase names.
    pub headers: Vec<(String, Secret)>,
    /// A PEM file of the CA certificates to trust for `https://`, instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The Standard Webhooks secret (`whsec_…`) every delivery is signed with, if any.
    pub signing_secret: Option<Secret>,
}

/// How a webhook sink's deliveries authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkAuth {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic …` (RFC 7617).
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
}

impl RawSink {
    /// The checked sink named `name` and its breaker; relative paths are taken from `base`.
    pub(super) fn check(
        self,
        name: &str,
        base: &Path,
    ) -> Result<(SinkConfig, BreakerConfig), String> {
        match self {
            Self::Http {
                url,
                timeout_ms,
                bearer_token,
                basic,
                headers,
                ca_file,
                signing_secret,
                breaker,
            } => {
                let breaker = breaker.check(&format!("sinks.{name}.breaker"))?;
                let url = url.value(base, &format!("sinks.{name}.url"))?;
                let (url, userinfo) = secret::split_userinfo(&url);
                if !url.expose().starts_with("http://") && !url.expose().starts_with("https://") {
                    return Err(format!(
                        "sinks.{name}.url: `{}` is not an http:// or https:// URL",
                        url.redacted()
                    ));
                }
                let what = |key: &str| format!("sinks.{name}.{key}");
                let auth = match (bearer_token, basic, userinfo) {
                    (None, None, None) => None,
                    (Some(token), None, None) => Some(SinkAuth::Bearer(
                        token.resolve(base, &what("bearer_token"))?,
                    )),
                    (None, Some(basic), None) => Some(SinkAuth::Basic {
                        user: basic.user,
                        password: basic.password.resolve(base, &what("basic.password"))?,
                    }),
                    (None, None, Some((user, password))) => {
                        Some(SinkAuth::Basic { user, password })
                    }
                    _ => {
                        return Err(format!(
                            "sinks.{name}: give one of bearer_token, basic and credentials in \
                             the URL"
                        ));
                    }
                };
                let mut extra = Vec::new();
                for (header, value) in headers {
                    let lower = header.to_ascii_lowercase();
                    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                        return Err(format!(
                            "sinks.{name}.headers: `{header}` is not a header name"
                        ));
                    }
                    let value = value.resolve(base, &what(&format!("headers.{header}")))?;
                    if http::HeaderValue::from_str(value.expose()).is_err() {
                        return Err(format!(
                            "sinks.{name}.headers.{header}: the value is not a header value"
                        ));
                    }
                    extra.push((lower, value));
                }
                let sink = HttpSink {
                    url,
                    timeout: Duration::from_millis(timeout_ms.unwrap_or(5000)),
                    auth,
                    headers: extra,
                    ca_file: ca_file.map(|path| super::resolve(base, &path)),
                    signing_secret: signing_secret
                        .map(|secret| secret.resolve(base, &what("signing_secret")))
                        .transpose()?,
                };
                Ok((SinkConfig::Http(sink), breaker))
            }
            Self::Nats {
                url,
                stream,
                subject,
                breaker,
            } => {
                let breaker = breaker.check(&format!("sinks.{name}.breaker"))?;
                let sink = SinkConfig::Nats {
                    url: url.value(base, &format!("sinks.{name}.url"))?,
                    stream,
                    subject,
                };
                Ok((sink, breaker))
            }
        }
    }
}
