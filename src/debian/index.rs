//! `Packages` indexes: the binary packages a repository offers for one architecture,
//! with the relations the resolver needs (`Depends`, `Pre-Depends`, `Provides`).

use super::version::{Relation, Version};
use super::DebianError;
use crate::digest::Sha256Digest;
use crate::recipe::valid_package_name;
use std::borrow::Cow;
use std::sync::Arc;

/// One package of an index, for the target architecture or `all`. Kept small (a full
/// archive index has tens of thousands): relations are parsed when the package is
/// considered, and the index it came from is shared.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub version: Version,
    /// `Architecture: all` (else the target architecture).
    pub arch_all: bool,
    /// Path of the .deb below the mirror root (`pool/main/b/busybox/...deb`).
    pub filename: String,
    pub sha256: Sha256Digest,
    pub size: u64,
    /// `Pre-Depends` then `Depends`, as written, joined by `, `.
    pub depends: String,
    /// `Conflicts` then `Breaks`, as written, joined by `, `: packages that cannot be
    /// installed beside this one (in an image built at once, `Breaks` forbids what
    /// `Conflicts` does).
    pub conflicts: String,
    pub provides: Vec<(String, Option<Version>)>,
    /// What makes apt prefer one provider of a virtual package over another.
    pub preference: ProviderPreference,
    pub origin: Arc<IndexOrigin>,
}

/// How apt ranks the providers of a virtual package against each other (its
/// `CompareProviders`): `Essential: yes` first, then `Important: yes`, then by
/// `Priority` (required, important, standard, optional, extra; a package without one
/// last). Orders best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProviderPreference {
    not_essential: bool,
    not_important: bool,
    priority_rank: u8,
}

impl ProviderPreference {
    /// From a stanza's `Essential`, `Important` and `Priority` fields.
    pub fn of(essential: Option<&str>, important: Option<&str>, priority: Option<&str>) -> Self {
        let priority_rank = match priority {
            Some("required") => 0,
            Some("important") => 1,
            Some("standard") => 2,
            Some("optional") => 3,
            Some("extra") => 4,
            _ => 5,
        };
        ProviderPreference {
            not_essential: essential != Some("yes"),
            not_important: important != Some("yes"),
            priority_rank,
        }
    }
}

impl Candidate {
    /// `Pre-Depends` and `Depends`: all of the groups, one alternative of each.
    pub fn dependencies(&self) -> Result<Vec<Vec<Dependency>>, DebianError> {
        self.relations("dependencies", &self.depends)
    }

    /// `Conflicts` and `Breaks`: every relation (they have no alternatives).
    pub fn conflicts(&self) -> Result<Vec<Dependency>, DebianError> {
        Ok(self
            .relations("conflicts", &self.conflicts)?
            .into_iter()
            .flatten()
            .collect())
    }

    fn relations(&self, what: &str, text: &str) -> Result<Vec<Vec<Dependency>>, DebianError> {
        parse_relations(text).ok_or_else(|| DebianError::BadIndex {
            index: self.origin.path.clone(),
            detail: format!(
                "package `{}` {}: cannot read its {what} `{text}`",
                self.name, self.version
            ),
        })
    }
}

/// One alternative of a dependency: `name[:any] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub constraint: Option<(Relation, Version)>,
}

impl Dependency {
    /// Whether a package at `version` (`None`: no version, as an unversioned
    /// `Provides`) meets this relation.
    pub fn allows(&self, version: Option<&Version>) -> bool {
        match (&self.constraint, version) {
            (None, _) => true,
            (Some((op, wanted)), Some(v)) => op.holds(v, wanted),
            (Some(_), None) => false,
        }
    }
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.constraint {
            Some((op, v)) => write!(f, "{} ({op} {v})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Where an index came from: repository (recipe name), path below
/// `dists/<suite>/`, and digest (as the signed InRelease gives it).
#[derive(Debug)]
pub struct IndexOrigin {
    pub repository: String,
    pub path: String,
    pub sha256: Sha256Digest,
}

/// The packages of `text` (a whole Packages index, parsed without copying it) built
/// for `arch` or `all`.
pub fn parse_index(
    text: &str,
    arch: &str,
    origin: &Arc<IndexOrigin>,
) -> Result<Vec<Candidate>, DebianError> {
    let bad = |detail: String| DebianError::BadIndex {
        index: origin.path.clone(),
        detail,
    };
    let mut out = Vec::new();
    for p in deb822_fast::borrowed::iter_paragraphs_borrowed(text) {
        let p = p.map_err(|e| bad(e.to_string()))?;
        // Values as one line (index fields are single-line; tolerate folding).
        let get = |name: &str| -> Option<Cow<'_, str>> {
            let lines = p.get(name)?;
            Some(match lines {
                [one] => Cow::Borrowed(*one),
                more => Cow::Owned(more.join(" ")),
            })
        };
        let architecture = get("Architecture").unwrap_or_default();
        if architecture != arch && architecture != "all" {
            continue;
        }
        let field =
            |name: &str| get(name).ok_or_else(|| bad(format!("a stanza has no `{name}` field")));
        let name = field("Package")?.into_owned();
        // The name becomes a path (`/var/lib/dpkg/status.d/<name>`): Policy 5.6.7 only.
        if !valid_package_name(&name) {
            return Err(bad(format!("invalid package name `{name}`")));
        }
        let version_text = field("Version")?;
        let version = Version::parse(&version_text).ok_or_else(|| {
            bad(format!(
                "package `{name}` has an invalid version `{version_text}`"
            ))
        })?;
        let sha256 = field("SHA256")?
            .parse()
            .map_err(|_| bad(format!("package `{name}` has an invalid SHA256")))?;
        let size = field("Size")?
            .parse()
            .map_err(|_| bad(format!("package `{name}` has an invalid Size")))?;
        let joined = |a: &str, b: &str| match (get(a), get(b)) {
            (Some(a), Some(b)) => format!("{a}, {b}"),
            (Some(one), None) | (None, Some(one)) => one.into_owned(),
            (None, None) => String::new(),
        };
        let depends = joined("Pre-Depends", "Depends");
        let conflicts = joined("Conflicts", "Breaks");
        let provides = match get("Provides") {
            Some(value) => parse_provides(&value)
                .ok_or_else(|| bad(format!("package `{name}`: cannot read Provides `{value}`")))?,
            None => Vec::new(),
        };
        let preference = ProviderPreference::of(
            get("Essential").as_deref(),
            get("Important").as_deref(),
            get("Priority").as_deref(),
        );
        out.push(Candidate {
            preference,
            arch_all: architecture == "all",
            filename: field("Filename")?.into_owned(),
            name,
            version,
            sha256,
            size,
            depends,
            conflicts,
            provides,
            origin: origin.clone(),
        });
    }
    Ok(out)
}

/// A `Provides` field: each name provided, with its version if it has one.
pub fn parse_provides(value: &str) -> Option<Vec<(String, Option<Version>)>> {
    Some(
        parse_relations(value)?
            .into_iter()
            .flatten()
            .map(|d| (d.name, d.constraint.map(|(_, v)| v)))
            .collect(),
    )
}

/// `a (>= 1) | b:any, c [amd64] <!nocheck>` -> groups of alternatives. Architecture
/// qualifiers (`:any`, `:native`) are dropped (one architecture per image);
/// architecture lists and build profiles, which only source packages use, are ignored.
pub fn parse_relations(value: &str) -> Option<Vec<Vec<Dependency>>> {
    let mut groups = Vec::new();
    for group in value.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alt in group.split('|') {
            let (name, constraint) = match alt.split_once('(') {
                Some((name, rest)) => {
                    let inner = rest.split_once(')')?.0.trim();
                    let split = inner
                        .find(|c: char| !"<>=".contains(c))
                        .unwrap_or(inner.len());
                    let op = Relation::parse(inner[..split].trim())?;
                    let version = Version::parse(inner[split..].trim())?;
                    (name.trim(), Some((op, version)))
                }
                None => (alt, None),
            };
            let name = name
                .split(['[', '<', ' ', '\t', ':'])
                .find(|w| !w.is_empty())
                .unwrap_or_default();
            if name.is_empty() {
                return None;
            }
            alternatives.push(Dependency {
                name: name.to_string(),
                constraint,
            });
        }
        groups.push(alternatives);
    }
    Some(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_parse_alternatives_versions_and_qualifiers() {
        let groups =
            parse_relations("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, perl:any, x [amd64] <!nocheck>,python3(<<3.12)")
                .unwrap();
        let shown: Vec<Vec<String>> = groups
            .iter()
            .map(|g| g.iter().map(|d| d.to_string()).collect())
            .collect();
        assert_eq!(
            shown,
            [
                vec!["libc6 (>= 2.34)".to_string()],
                vec!["debconf (>= 0.5)".into(), "debconf-2.0".into()],
                vec!["perl".into()],
                vec!["x".into()],
                vec!["python3 (<< 3.12)".into()],
            ]
        );
        assert!(parse_relations("a (~ 1)").is_none());
        assert!(parse_relations("a (>= 1").is_none());
    }

    #[test]
    fn index_keeps_the_target_architecture_and_all() {
        let text = "Package: aa\nVersion: 1\nArchitecture: amd64\nFilename: pool/a.deb\nSize: 3\nSHA256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\nDepends: bb\nProvides: cc (= 2)\nPriority: optional\n\nPackage: bb\nVersion: 1\nArchitecture: arm64\nFilename: pool/b.deb\nSize: 3\nSHA256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n\nPackage: dd\nVersion: 1\nEssential: yes\nPriority: required\nArchitecture: all\nFilename: pool/d.deb\nSize: 3\nSHA256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n";
        let origin = Arc::new(IndexOrigin {
            repository: "r".into(),
            path: "main/binary-amd64/Packages".into(),
            sha256: Sha256Digest::of(b""),
        });
        let c = parse_index(text, "amd64", &origin).unwrap();
        let names: Vec<_> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["aa", "dd"]);
        assert!(!c[0].arch_all && c[1].arch_all);
        assert_eq!(c[0].dependencies().unwrap()[0][0].name, "bb");
        assert_eq!(c[0].provides[0].0, "cc");
        assert_eq!(c[0].provides[0].1.as_ref().unwrap().as_str(), "2");
        assert_eq!(
            c[0].preference,
            ProviderPreference::of(None, None, Some("optional"))
        );
        assert!(
            c[1].preference < c[0].preference,
            "essential and required rank first"
        );
        let err = parse_index("Package: aa\nArchitecture: all\n", "amd64", &origin).unwrap_err();
        assert!(err.to_string().contains("no `Version`"), "{err}");
        let hostile = "Package: ../../etc/passwd\nArchitecture: all\n";
        let err = parse_index(hostile, "amd64", &origin).unwrap_err();
        assert!(err.to_string().contains("invalid package name"), "{err}");
    }
}
