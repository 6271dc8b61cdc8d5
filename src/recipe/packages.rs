//! `repositories:`, `packages:` and `layering:` — Debian packages from signed apt
//! repositories. Each repository names a mirror (`host`, taken from the host's apt
//! configuration when building, or an `http(s)://` URL), a suite, its components and
//! the OpenPGP keyring its `InRelease` must be signed with. `packages:` lists package
//! names (their `Depends`/`Pre-Depends` come along); `layering.max_layers` bounds how
//! many layers the packages are spread over; `extra_ca_certificates:` names sources of
//! CA certificates to trust besides the packages' own; `dpkg_database:` chooses between
//! distroless metadata (the default) and dpkg's full database.

use super::context::{span_of, Cx, Unique};
use super::model::{
    DpkgDatabase, ExtraCaCertificate, Mirror, PackageRequest, PackagesSpec, PathFilter,
    RepositorySpec, SourceKind, SourceSpec,
};
use super::raw::{RawExtraCa, RawLayering, RawPathFilter, RawRepository, SpannedMap, Text};
use super::values::{did_you_mean, item_name, list, unknown, Invalid};
use super::Diagnostic;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// Package layers when the recipe does not say (`layering: { max_layers: N }`).
pub const DEFAULT_MAX_LAYERS: u32 = 4;
/// The values of `dpkg_database:`.
const DPKG_DATABASES: [&str; 2] = ["distroless", "full"];
/// More package layers than this gain nothing and slow down pulls.
const MAX_MAX_LAYERS: u32 = 64;

pub(super) struct RawPackageFields {
    pub repositories: Option<Spanned<SpannedMap<Spanned<RawRepository>>>>,
    pub packages: Option<Spanned<Vec<Text>>>,
    pub layering: Option<Spanned<RawLayering>>,
    pub path_filters: Option<Spanned<Vec<Spanned<RawPathFilter>>>>,
    pub extra_ca_certificates: Option<Spanned<Vec<Spanned<RawExtraCa>>>>,
    pub dpkg_database: Option<Text>,
}

pub(super) fn parse(
    cx: &Cx,
    raw: RawPackageFields,
    sources: &BTreeMap<String, SourceSpec>,
) -> Result<Option<PackagesSpec>, Diagnostic> {
    let RawPackageFields {
        repositories,
        packages,
        layering,
        path_filters,
        extra_ca_certificates,
        dpkg_database,
    } = raw;
    let Some(packages) = packages else {
        if let Some(repositories) = &repositories {
            return Err(cx
                .error(span_of(repositories), "`repositories` without `packages`")
                .with_hint("add `packages: [<name>, ...]` to install packages from these repositories, or drop `repositories`"));
        }
        if let Some(layering) = &layering {
            return Err(cx
                .error(span_of(layering), "`layering` without `packages`")
                .with_hint(
                    "`layering` spreads Debian packages over layers; add `packages:` or drop it",
                ));
        }
        if let Some(filters) = &path_filters {
            return Err(cx
                .error(span_of(filters), "`path_filters` without `packages`")
                .with_hint(
                    "`path_filters` leaves files of Debian packages out; add `packages:` or drop it",
                ));
        }
        if let Some(extra) = &extra_ca_certificates {
            return Err(cx
                .error(span_of(extra), "`extra_ca_certificates` without `packages`")
                .with_hint(
                    "the certificates are added as Debian's `update-ca-certificates` adds them: add `packages: [ca-certificates]` (with `repositories:`)",
                ));
        }
        if let Some(database) = &dpkg_database {
            return Err(cx
                .error(span_of(database), "`dpkg_database` without `packages`")
                .with_hint(
                    "`dpkg_database` chooses the dpkg metadata of Debian packages; add `packages:` or drop it",
                ));
        }
        return Ok(None);
    };
    let span = span_of(&packages);
    let repositories = cx.require(
        repositories,
        span,
        "`packages` needs `repositories` to install them from",
        "add e.g. `repositories: { debian: { mirror: host, suite: bookworm, components: [main], keyring: /usr/share/keyrings/debian-archive-keyring.gpg } }`",
    )?;
    let repositories = parse_repositories(cx, repositories)?;
    if packages.value.is_empty() {
        return Err(cx
            .error(span, "`packages` is empty")
            .with_hint("list the Debian packages to install, e.g. `packages: [busybox-static]`, or drop `packages` and `repositories`"));
    }
    let mut seen = Unique::new("package");
    let mut requested = Vec::with_capacity(packages.value.len());
    for name in packages.value {
        cx.check(&name, |n| package_name(n))?;
        seen.insert(cx, name.value.clone(), span_of(&name))?;
        requested.push(PackageRequest {
            span: span_of(&name),
            name: name.value,
        });
    }
    let max_layers = match layering.and_then(|l| l.value.max_layers) {
        Some(n) => cx.check(&n, |&n| {
            if (1..=MAX_MAX_LAYERS).contains(&n) {
                Ok(n)
            } else {
                Err(
                    Invalid::new(format!("`max_layers: {n}` is out of range")).with_hint(format!(
                        "give a number of layers from 1 to {MAX_MAX_LAYERS}"
                    )),
                )
            }
        })?,
        None => DEFAULT_MAX_LAYERS,
    };
    let path_filters = match path_filters {
        Some(filters) => filters
            .value
            .into_iter()
            .map(|f| parse_path_filter(cx, f))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let extra_ca_certificates = match extra_ca_certificates {
        Some(list) => parse_extra_ca(cx, list, sources)?,
        None => Vec::new(),
    };
    let dpkg_database = match dpkg_database {
        Some(text) => cx.check(&text, |t| match t.as_str() {
            "distroless" => Ok(DpkgDatabase::Distroless),
            "full" => Ok(DpkgDatabase::Full),
            other => Err(unknown("dpkg database", other, &DPKG_DATABASES)),
        })?,
        None => DpkgDatabase::default(),
    };
    Ok(Some(PackagesSpec {
        repositories,
        requested,
        max_layers,
        path_filters,
        extra_ca_certificates,
        dpkg_database,
        span,
    }))
}

/// `extra_ca_certificates: [{ source: corp-ca }, ...]`: each a `path:` source (one
/// PEM file), named once.
fn parse_extra_ca(
    cx: &Cx,
    raw: Spanned<Vec<Spanned<RawExtraCa>>>,
    sources: &BTreeMap<String, SourceSpec>,
) -> Result<Vec<ExtraCaCertificate>, Diagnostic> {
    let mut seen = Unique::new("extra CA certificate source");
    let mut out = Vec::with_capacity(raw.value.len());
    for item in raw.value {
        let at = span_of(&item);
        let source = cx.require(
            item.value.source,
            at,
            "an extra CA certificate names no `source`",
            "write `- source: <source name>`, the source being a PEM certificate file under `sources:`",
        )?;
        cx.check(&source, |name| match sources.get(name) {
            Some(spec) if spec.kind == SourceKind::Archive => Err(Invalid::new(format!(
                "extra CA certificate source `{name}` is an archive"
            ))
            .with_hint("give the certificate as a `path:` source of one PEM file")),
            Some(_) => Ok(()),
            None => {
                let invalid = Invalid::new(format!(
                    "`extra_ca_certificates` names unknown source `{name}`"
                ));
                Err(
                    match did_you_mean(name, sources.keys().map(String::as_str)) {
                        Some(close) => invalid.with_hint(format!("did you mean `{close}`?")),
                        None if sources.is_empty() => invalid.with_hint(
                            "define the certificate under `sources:` first, e.g. `corp-ca: { path: certs/corp-ca.pem }`",
                        ),
                        None => invalid.with_hint(format!(
                            "defined sources: {}",
                            list(sources.keys().map(String::as_str))
                        )),
                    },
                )
            }
        })?;
        seen.insert(cx, source.value.clone(), span_of(&source))?;
        out.push(ExtraCaCertificate {
            span: span_of(&source),
            source: source.value,
        });
    }
    Ok(out)
}

/// `{ exclude: /usr/share/doc/* }` or `{ include: /usr/share/doc/*/copyright }`.
fn parse_path_filter(cx: &Cx, raw: Spanned<RawPathFilter>) -> Result<PathFilter, Diagnostic> {
    let at = span_of(&raw);
    let (include, glob) = match (raw.value.exclude, raw.value.include) {
        (Some(glob), None) => (false, glob),
        (None, Some(glob)) => (true, glob),
        _ => {
            return Err(cx
                .error(at, "a path filter is `exclude: GLOB` or `include: GLOB`")
                .with_hint("write one per list item, e.g. `- exclude: /usr/share/doc/*`, then `- include: /usr/share/doc/*/copyright`"))
        }
    };
    cx.check(&glob, |g| {
        if g.starts_with('/') {
            Ok(())
        } else {
            Err(Invalid::new(format!("path filter `{g}` is not absolute"))
                .with_hint("filters match absolute paths in the image, as dpkg's do: start with `/`, e.g. `/usr/share/doc/*`"))
        }
    })?;
    Ok(PathFilter {
        include,
        span: span_of(&glob),
        glob: glob.value,
    })
}

fn parse_repositories(
    cx: &Cx,
    raw: Spanned<SpannedMap<Spanned<RawRepository>>>,
) -> Result<BTreeMap<String, RepositorySpec>, Diagnostic> {
    if raw.value.0.is_empty() {
        return Err(cx
            .error(span_of(&raw), "`repositories` is empty")
            .with_hint("name at least one repository: `debian: { mirror: host, suite: bookworm, components: [main], keyring: <file> }`"));
    }
    let mut out = BTreeMap::new();
    for (name, repo) in raw.value.0 {
        cx.check(&name, |n| item_name("repository", n))?;
        let at = span_of(&name);
        let RawRepository {
            mirror,
            suite,
            components,
            keyring,
        } = repo.value;
        let missing = |field: &str, example: &str| {
            (
                format!("repository `{}` has no `{field}`", name.value),
                format!("add `{field}: {example}`"),
            )
        };
        let (m, h) = missing(
            "mirror",
            "host` (the host's apt mirror) or `mirror: <http(s) URL>",
        );
        let mirror = cx.require(mirror, at, m, h)?;
        let mirror = cx.check(&mirror, |m| parse_mirror(m))?;
        let (m, h) = missing("suite", "bookworm");
        let suite = cx.require(suite, at, m, h)?;
        cx.check(&suite, |s| path_word("suite", s))?;
        let (m, h) = missing("components", "[main]");
        let components = cx.require(components, at, m, h)?;
        if components.value.is_empty() {
            return Err(cx
                .error(span_of(&components), "`components` is empty")
                .with_hint("list at least one component, e.g. `components: [main]`"));
        }
        for c in &components.value {
            cx.check(c, |c| path_word("component", c))?;
        }
        let (m, h) = missing("keyring", "/usr/share/keyrings/debian-archive-keyring.gpg");
        let keyring = cx.require(keyring, at, m, h)?;
        cx.check(&keyring, |k| {
            if k.is_empty() {
                Err(Invalid::new("`keyring` is empty").with_hint(
                    "give the OpenPGP keyring file (absolute, or relative to the recipe)",
                ))
            } else {
                Ok(())
            }
        })?;
        out.insert(
            name.value.clone(),
            RepositorySpec {
                name: name.value,
                mirror,
                suite: suite.value,
                components: components.value.into_iter().map(|c| c.value).collect(),
                keyring: keyring.value,
                span: at,
            },
        );
    }
    Ok(out)
}

fn parse_mirror(m: &str) -> Result<Mirror, Invalid> {
    if m == "host" {
        return Ok(Mirror::Host);
    }
    let rest = m
        .strip_prefix("http://")
        .or_else(|| m.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => {
            Ok(Mirror::Url(m.trim_end_matches('/').to_string()))
        }
        _ => Err(Invalid::new(format!("invalid mirror `{m}`")).with_hint(
            "write `mirror: host` to use the host's apt mirror, or an http:// or https:// URL of the archive root (the directory holding `dists/`)",
        )),
    }
}

/// A suite or component: one URL path segment of letters, digits, `.`, `_`, `-`
/// (components may hold `/`, as in `updates/main`).
fn path_word(what: &str, s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && !s
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(format!("invalid {what} `{s}`"))
            .with_hint(format!("a {what} is a name such as `bookworm` or `main`")))
    }
}

/// Whether `name` is a Debian package name (Policy 5.6.7): `[a-z0-9][a-z0-9+.-]+`.
pub fn valid_package_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() >= 2
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
}

/// A Debian package name (Policy 5.6.7): `[a-z0-9][a-z0-9+.-]+`.
fn package_name(s: &str) -> Result<(), Invalid> {
    if valid_package_name(s) {
        Ok(())
    } else {
        Err(Invalid::new(format!("invalid package name `{s}`")).with_hint(
            "Debian package names are lower-case letters, digits, `+`, `-` and `.`, at least two characters (versions are chosen by the resolver and pinned in the lock file)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::recipe::{parse, Diagnostic, Mirror, Recipe, RecipeFile, Span};

    fn parse_with(fields: &str) -> Result<Recipe, Diagnostic> {
        parse(RecipeFile {
            path: "recipe.yaml".into(),
            dir: ".".into(),
            text: format!(
                "cairn: 1\nname: t\n{fields}layers:\n  - name: l\n    contents:\n      - dir: /x\n"
            ),
        })
    }

    const REPO: &str = "repositories:\n  debian:\n    mirror: host\n    suite: bookworm\n    components: [main, contrib]\n    keyring: keys/archive.gpg\n";

    #[test]
    fn repositories_and_packages_land_in_the_model() {
        let recipe = parse_with(&format!(
            "{REPO}  local: {{ mirror: 'http://127.0.0.1:8000/debian/', suite: stable, components: [main], keyring: /k.gpg }}\npackages: [busybox-static, ca-certificates]\nlayering: {{ max_layers: 3 }}\n"
        ))
        .unwrap();
        let spec = recipe.packages.unwrap();
        assert_eq!(spec.max_layers, 3);
        let names: Vec<_> = spec.requested.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["busybox-static", "ca-certificates"]);
        assert_eq!(
            spec.requested[1].span,
            Span {
                line: 10,
                column: 28
            }
        );
        let debian = &spec.repositories["debian"];
        assert_eq!(debian.mirror, Mirror::Host);
        assert_eq!(debian.components, ["main", "contrib"]);
        assert_eq!(debian.keyring, "keys/archive.gpg");
        assert_eq!(
            spec.repositories["local"].mirror,
            Mirror::Url("http://127.0.0.1:8000/debian".into())
        );
    }

    #[test]
    fn path_filters_keep_their_order() {
        let recipe = parse_with(&format!(
            "{REPO}packages: [hello]\npath_filters:\n  - exclude: /usr/share/doc/*\n  - include: /usr/share/doc/*/copyright\n"
        ))
        .unwrap();
        let filters: Vec<_> = recipe
            .packages
            .unwrap()
            .path_filters
            .into_iter()
            .map(|f| (f.include, f.glob))
            .collect();
        assert_eq!(
            filters,
            [
                (false, "/usr/share/doc/*".to_string()),
                (true, "/usr/share/doc/*/copyright".to_string())
            ]
        );
    }

    #[test]
    fn extra_ca_certificates_name_file_sources() {
        let recipe = parse_with(&format!(
            "sources:\n  corp-ca: {{ path: corp.pem }}\n{REPO}packages: [ca-certificates]\nextra_ca_certificates:\n  - source: corp-ca\n"
        ))
        .unwrap();
        let extra = recipe.packages.unwrap().extra_ca_certificates;
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0].source, "corp-ca");
        assert_eq!(extra[0].span.line, 13);
    }

    #[test]
    fn defaults_and_absence() {
        let recipe = parse_with(&format!("{REPO}packages: [hello]\n")).unwrap();
        assert_eq!(
            recipe.packages.unwrap().max_layers,
            super::DEFAULT_MAX_LAYERS
        );
        assert!(parse_with("").unwrap().packages.is_none());
    }

    #[test]
    fn bad_package_fields_get_diagnostics_with_hints() {
        let cases = [
            ("packages: [hello]\n", "`packages` needs `repositories`"),
            (REPO, "`repositories` without `packages`"),
            (&format!("{REPO}packages: []\n"), "`packages` is empty"),
            (&format!("{REPO}packages: [Hello]\n"), "invalid package name `Hello`"),
            (&format!("{REPO}packages: [a1, a1]\n"), "duplicate package `a1`"),
            (
                &format!("{REPO}packages: [a1]\nlayering: {{ max_layers: 0 }}\n"),
                "`max_layers: 0` is out of range",
            ),
            (
                "sources: { ca: { path: ca.pem } }\nextra_ca_certificates: [{ source: ca }]\n",
                "`extra_ca_certificates` without `packages`",
            ),
            (
                &format!("sources: {{ corp-ca: {{ path: ca.pem }} }}\n{REPO}packages: [a1]\nextra_ca_certificates: [{{ source: corp-cb }}]\n"),
                "`extra_ca_certificates` names unknown source `corp-cb`",
            ),
            (
                &format!("sources: {{ ca: {{ archive: ca.tar }} }}\n{REPO}packages: [a1]\nextra_ca_certificates: [{{ source: ca }}]\n"),
                "extra CA certificate source `ca` is an archive",
            ),
            (
                &format!("sources: {{ ca: {{ path: ca.pem }} }}\n{REPO}packages: [a1]\nextra_ca_certificates: [{{ source: ca }}, {{ source: ca }}]\n"),
                "duplicate extra CA certificate source `ca`",
            ),
            (
                "path_filters: [{ exclude: /usr/share/doc/* }]\n",
                "`path_filters` without `packages`",
            ),
            (
                &format!("{REPO}packages: [a1]\npath_filters: [{{ exclude: usr/share/doc/* }}]\n"),
                "path filter `usr/share/doc/*` is not absolute",
            ),
            (
                &format!("{REPO}packages: [a1]\npath_filters: [{{ exclude: /a, include: /b }}]\n"),
                "a path filter is `exclude: GLOB` or `include: GLOB`",
            ),
            (
                "repositories:\n  d: { mirror: ftp://x, suite: s, components: [main], keyring: k }\npackages: [a1]\n",
                "invalid mirror `ftp://x`",
            ),
            (
                "repositories:\n  d: { mirror: host, components: [main], keyring: k }\npackages: [a1]\n",
                "repository `d` has no `suite`",
            ),
            (
                "repositories:\n  d: { mirror: host, suite: '../x', components: [main], keyring: k }\npackages: [a1]\n",
                "invalid suite `../x`",
            ),
            (
                "repositories:\n  d: { mirror: host, suite: s, components: [main], keyring: k, arch: x }\npackages: [a1]\n",
                "unknown field `arch`",
            ),
        ];
        for (fields, expected) in cases {
            let err = parse_with(fields).unwrap_err();
            let err = crate::diag::Report::of(&err).to_string();
            assert!(err.contains(expected), "{fields}: {err}");
            assert!(err.contains("= help:"), "{fields}: {err}");
        }
    }
}
