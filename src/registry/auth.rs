//! Registry credentials and the two authentication schemes of the distribution spec:
//! HTTP Basic, and the bearer token flow (a `WWW-Authenticate: Bearer realm=...`
//! challenge, then a token from the realm, sent as `Authorization: Bearer`).
//!
//! Credentials come from the caller: the CLI reads `CAIRN_REGISTRY_USERNAME` /
//! `CAIRN_REGISTRY_PASSWORD` and the Docker config file and hands the bytes to
//! [`Credentials::from_docker_config`]; the library never reads the environment.
//! Secrets never appear in `Debug` output or error messages.

use base64::Engine as _;
use std::collections::BTreeMap;
use std::fmt;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Login {
    /// The `Authorization: Basic ...` value.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Logins per registry host, plus one for every registry (from the environment).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Used for every registry; takes precedence over `per_registry`.
    pub any_registry: Option<Login>,
    /// Keyed by `host[:port]` (`docker.io` for Docker Hub).
    pub per_registry: BTreeMap<String, Login>,
    /// Docker credential helpers named by the config file: `credHelpers` per
    /// registry, and `credsStore` for the rest. The caller runs them (see
    /// [`Credentials::helper_for`]); the library runs no programs.
    pub helpers: BTreeMap<String, String>,
    pub default_helper: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the Docker config file is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("the Docker config file's entry for {registry}: {reason}")]
    Entry { registry: String, reason: String },
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Credentials {
    /// Reads the `auths` of a Docker config file (`~/.docker/config.json`): each entry
    /// has `auth` (base64 of `user:password`) or `username` and `password`. Keys may
    /// be `host`, `host:port` or a URL (`https://index.docker.io/v1/` is Docker Hub).
    /// Entries without either are skipped. `credHelpers` and `credsStore` are kept
    /// for the caller to run.
    pub fn from_docker_config(bytes: &[u8]) -> Result<Credentials, CredentialsError> {
        let config: DockerConfig = serde_json::from_slice(bytes).map_err(CredentialsError::Json)?;
        let mut per_registry = BTreeMap::new();
        for (key, entry) in config.auths {
            let registry = normalize_registry_key(&key);
            let login = match (entry.auth.filter(|a| !a.is_empty()), entry.username) {
                (Some(auth), _) => {
                    let bad = |reason: &str| CredentialsError::Entry {
                        registry: registry.clone(),
                        reason: reason.to_string(),
                    };
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| bad("`auth` is not base64"))?;
                    let text =
                        String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
                    let (username, password) = text
                        .split_once(':')
                        .ok_or_else(|| bad("`auth` does not decode to `user:password`"))?;
                    Login {
                        username: username.to_string(),
                        password: password.to_string(),
                    }
                }
                (None, Some(username)) => Login {
                    username,
                    password: entry.password.unwrap_or_default(),
                },
                (None, None) => continue,
            };
            per_registry.insert(registry, login);
        }
        Ok(Credentials {
            any_registry: None,
            per_registry,
            helpers: config
                .cred_helpers
                .into_iter()
                .map(|(k, v)| (normalize_registry_key(&k), v))
                .collect(),
            default_helper: config.creds_store.filter(|s| !s.is_empty()),
        })
    }

    /// The credential helper to ask for `registry`'s login (`docker-credential-<name>
    /// get`), when neither the environment nor `auths` gives one.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        if self.login_for(registry).is_some() {
            return None;
        }
        self.helpers
            .get(registry)
            .or(self.default_helper.as_ref())
            .map(String::as_str)
    }

    /// What a credential helper is asked for: the server URL `docker login` stored
    /// (`https://index.docker.io/v1/` for Docker Hub, else the host).
    pub fn helper_server_url(registry: &str) -> String {
        if registry == super::reference::DOCKER_HUB {
            "https://index.docker.io/v1/".to_string()
        } else {
            registry.to_string()
        }
    }

    /// The login for `registry` (`host[:port]` as in the reference), if any.
    pub fn login_for(&self, registry: &str) -> Option<&Login> {
        self.any_registry
            .as_ref()
            .or_else(|| self.per_registry.get(registry))
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`, `https://host:5000` -> `host:5000`.
fn normalize_registry_key(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    match host {
        "index.docker.io" | "registry-1.docker.io" => super::reference::DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// Space-separated scopes, as the registry asked for them.
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(params);
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    } else {
        None
    }
}

/// `a="x,y", b=z` -> {a: "x,y", b: "z"} (keys lower-cased).
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The token endpoint's answer (`token`, or OAuth2's `access_token`).
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_auth_and_username_password() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let config = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "127.0.0.1:5000": {{"username": "bob", "password": "pw"}},
                "helper.example": {{}}
            }}, "credsStore": "desktop", "credHelpers": {{"ecr.example": "ecr-login"}}}}"#
        );
        let creds = Credentials::from_docker_config(config.as_bytes()).unwrap();
        let hub = creds.login_for("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("alice", "s3cr:et")
        );
        assert_eq!(creds.login_for("127.0.0.1:5000").unwrap().username, "bob");
        assert!(creds.login_for("helper.example").is_none());
        assert_eq!(creds.helper_for("helper.example"), Some("desktop"));
        assert_eq!(creds.helper_for("ecr.example"), Some("ecr-login"));
        assert_eq!(creds.helper_for("docker.io"), None, "auths wins");
        let bad = Credentials::from_docker_config(br#"{"auths":{"h":{"auth":"!!"}}}"#);
        assert!(bad.unwrap_err().to_string().contains("not base64"));
    }

    #[test]
    fn debug_output_redacts_passwords() {
        let creds = Credentials {
            any_registry: Some(Login {
                username: "alice".into(),
                password: "hunter2".into(),
            }),
            ..Default::default()
        };
        let text = format!("{creds:?}");
        assert!(
            text.contains("alice") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn challenges_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}
