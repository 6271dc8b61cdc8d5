//! Image references: `[host[:port]/]name[:tag][@sha256:<hex>]`, read the way docker
//! reads them. A first component with a `.` or a `:`, or `localhost`, is a registry
//! host; otherwise the registry is Docker Hub and a one-component name gets the
//! `library/` prefix (`alpine` is `docker.io/library/alpine`). Without a tag or
//! digest the tag is `latest`.

use crate::digest::Sha256Digest;
use std::fmt;
use std::str::FromStr;

/// The name Docker Hub goes by in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's distribution API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    pub registry: String,
    /// The repository, e.g. `library/alpine` or `team/app`.
    pub repository: String,
    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// The digest, if the reference pins one.
    pub digest: Option<Sha256Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{text}` is not an image reference: {reason} (expected [HOST[:PORT]/]NAME[:TAG][@sha256:HEX], e.g. 127.0.0.1:5000/team/app:v1)")]
pub struct ParseReferenceError {
    pub text: String,
    pub reason: String,
}

impl Reference {
    /// The host to connect to (`docker.io` maps to its API host).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The host without its port (`[::1]:5000` -> `::1`).
    pub fn hostname(&self) -> &str {
        hostname_of(&self.registry)
    }

    /// What the manifest endpoint is addressed by: the digest if pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Sha256Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// `host:port` -> `host`, `[::1]:5000` -> `::1`.
pub(crate) fn hostname_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

impl fmt::Display for Reference {
    /// `registry/repository[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ParseReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ParseReferenceError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| err("only sha256 digests are supported after `@`"))
                    .and_then(|_| {
                        digest.parse::<Sha256Digest>().map_err(|_| {
                            err("the digest is not sha256: and 64 lower-case hex digits")
                        })
                    })?;
                (rest, Some(digest))
            }
            None => (text, None),
        };
        // A tag is a `:` after the last `/` (a `:` before it belongs to the port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(err("a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            Some(_) => (DOCKER_HUB.to_string(), name.to_string()),
            None => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        if registry.is_empty() || registry.contains(char::is_whitespace) {
            return Err(err("the registry host is empty or has spaces"));
        }
        if !repository.split('/').all(valid_path_component) {
            return Err(err(
                "each name component must be lower-case letters and digits, separated by `.`, `_`, `__` or `-`",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn docker_hub_defaults_as_docker_does() {
        let r = parse("alpine");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/alpine", Some("latest"))
        );
        assert_eq!(r.api_host(), DOCKER_HUB_API_HOST);
        let r = parse("team/app:v1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "team/app")
        );
        assert_eq!(r.to_string(), "docker.io/team/app:v1");
    }

    #[test]
    fn host_port_tag_and_digest() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = parse(&format!("127.0.0.1:5000/team/app:v1@sha256:{hex}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.hostname(), "127.0.0.1");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_ref(), format!("sha256:{hex}"));
        let r = parse(&format!("localhost/app@sha256:{hex}"));
        assert_eq!((r.registry.as_str(), r.tag), ("localhost", None));
        let r = parse("localhost:5000/app");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "app", Some("latest"))
        );
        assert_eq!(parse("[::1]:5000/app").hostname(), "::1");
    }

    #[test]
    fn bad_references_are_refused_with_the_reason() {
        for bad in [
            "",
            "Upper/app",
            "host:5000/app:",
            "app:-x",
            "app@sha256:abc",
            "app@md5:0123",
            "a//b",
            "app/",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad:?} parsed");
        }
        let e = "app@sha256:abc".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("64 lower-case hex"), "{e}");
    }
}
