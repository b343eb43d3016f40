//! Secrets in the configuration: the admin token and sink credentials. Each is given as a
//! literal, or better read from the environment (`{ env = "NAME" }`) or a file
//! (`{ file = "path" }`), so that the config file itself holds none. Once read, a secret is a
//! [`Secret`], which never prints its value; a sink URL is a [`SinkUrl`], shown with its
//! query values redacted (credentials in its userinfo are taken out as basic auth).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSecret {
    /// The value itself.
    Literal(String),
    /// The value of an environment variable.
    Env(RawEnv),
    /// The contents of a file, without a trailing newline.
    File(RawFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnv {
    env: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    file: PathBuf,
}

impl RawSecret {
    /// The secret's value; `what` names it in errors, which never hold the value.
    pub(super) fn resolve(self, base: &Path, what: &str) -> Result<Secret, String> {
        let value = match self {
            Self::Literal(value) => value,
            Self::Env(RawEnv { env }) => std::env::var(&env)
                .map_err(|_| format!("{what}: the environment variable `{env}` is not set"))?,
            Self::File(RawFile { file }) => {
                let path = base.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?;
                text.trim_end_matches(['\n', '\r']).to_owned()
            }
        };
        if value.is_empty() {
            return Err(format!("{what} is empty"));
        }
        Ok(Secret(value))
    }
}

impl RawSecret {
    /// A plugin config value: a literal as it is (empty too), else the secret it names.
    pub(super) fn value(self, base: &Path, what: &str) -> Result<String, String> {
        match self {
            Self::Literal(value) => Ok(value),
            other => other.resolve(base, what).map(|s| s.0),
        }
    }
}

/// A secret value: used, never shown (its `Debug` says `[redacted]`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret with this value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A sink's URL, without userinfo; shown (`Debug`, [`SinkUrl::redacted`]) with every query
/// value replaced, since query strings often carry API keys.
#[derive(Clone, PartialEq, Eq)]
pub struct SinkUrl(String);

impl SinkUrl {
    /// The URL as requests use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL to show: query values replaced by `REDACTED`.
    pub fn redacted(&self) -> String {
        let Some((base, query)) = self.0.split_once('?') else {
            return self.0.clone();
        };
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}=REDACTED"),
                None => pair.to_owned(),
            })
            .collect();
        format!("{base}?{}", query.join("&"))
    }
}

impl std::fmt::Debug for SinkUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `url` without its userinfo, and the user and password that were in it (percent-decoded).
pub(super) fn split_userinfo(url: &str) -> (SinkUrl, Option<(String, Secret)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (SinkUrl(url.to_owned()), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (SinkUrl(url.to_owned()), None);
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let clean = SinkUrl(format!("{scheme}://{host}{tail}"));
    let credentials = (
        crate::percent::decode(user),
        Secret(crate::percent::decode(password)),
    );
    (clean, Some(credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_taken_out_and_query_values_are_redacted() {
        let (url, credentials) =
            split_userinfo("http://user:p%40ss@127.0.0.1:9/events?api_key=k3y&v=2");
        assert_eq!(url.expose(), "http://127.0.0.1:9/events?api_key=k3y&v=2");
        assert_eq!(
            url.redacted(),
            "http://127.0.0.1:9/events?api_key=REDACTED&v=REDACTED"
        );
        assert_eq!(format!("{url:?}"), url.redacted());
        let (user, password) = credentials.unwrap();
        assert_eq!((user.as_str(), password.expose()), ("user", "p@ss"));
        assert_eq!(format!("{password:?}"), "[redacted]");
    }

    #[test]
    fn a_secret_comes_from_the_environment_or_a_file_and_errors_never_hold_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
        let file = RawSecret::File(RawFile {
            file: "token".into(),
        });
        assert_eq!(file.resolve(dir.path(), "x").unwrap().expose(), "t0ken");
        let path = std::env::var("PATH").unwrap();
        let env = RawSecret::Env(RawEnv { env: "PATH".into() });
        assert_eq!(env.resolve(dir.path(), "x").unwrap().expose(), path);
        let missing = RawSecret::Env(RawEnv {
            env: "DRAGOMAN_NO_SUCH_VARIABLE".into(),
        });
        let error = missing
            .resolve(dir.path(), "sinks.hook.bearer_token")
            .unwrap_err();
        assert!(error.contains("DRAGOMAN_NO_SUCH_VARIABLE"), "{error}");
    }
}
