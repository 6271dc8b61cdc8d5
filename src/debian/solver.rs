//! Picks the packages to install: the requested ones and, transitively, one
//! alternative of each of their `Pre-Depends` and `Depends`.
//!
//! Deterministic by construction; the rules, in order:
//! 1. Requests are taken in name order, then dependencies breadth-first in the order
//!    the packages list them.
//! 2. A dependency already satisfied by a chosen package (by name and version, or by
//!    a chosen package's `Provides`) adds nothing.
//! 3. Otherwise the alternatives are tried left to right, as apt does; the first one
//!    that any package can satisfy wins.
//! 4. A real package of that name wins over providers: its highest version that
//!    satisfies the relation (ties between repositories: the first repository by name).
//! 5. Else a provider, at its highest version whose `Provides` satisfies the relation
//!    (a versioned relation needs a versioned `Provides`), chosen as apt's
//!    `CompareProviders` does: `Essential: yes` first, then `Important: yes`, then the
//!    higher `Priority` (so `mawk`, required, provides `awk` before `gawk`, optional);
//!    where apt would then take the package it happened to read last, the first by name.
//!
//! 6. The packages chosen must not conflict: a `Conflicts` or `Breaks` relation of one
//!    that another chosen package satisfies (by name and version, or by `Provides`;
//!    a package's relation on a name it provides itself does not count, as in Debian
//!    Policy 7.6.2) is an error naming both.
//!
//! On a base image, its installed packages ([`BasePackages`]) count as apt counts
//! them, never installed again:
//! 7. A dependency an installed package meets (by name and version, or by its
//!    `Provides`) adds nothing; the installed package is kept (rule 2 comes first).
//! 8. A requested package the base has is kept when the repositories have no newer
//!    version (the same, an older one or none: apt counts the installed version as a
//!    candidate and says "already the newest version"), and upgraded (installed again
//!    at the newer version) when they have one, as `apt install` does.
//! 9. A dependency that only an older version than the base's meets would replace an
//!    installed package with a lower version: an error naming both versions, as apt
//!    would not downgrade either.
//! 10. Once chosen, every dependency of a chosen package must still be met: an
//!    upgrade (rule 8) may take away the version an earlier dependency relied on. The
//!    base's packages' own dependencies are not checked again.
//!
//! `Recommends` and `Suggests` are not considered, and no `Essential: yes` or
//! `Priority: required` package is added unless asked for.

use super::index::{Candidate, Dependency};
use super::status::{BasePackage, BasePackages};
use super::version::Version;
use super::DebianError;
use std::collections::{BTreeMap, VecDeque};

/// All candidates by name, highest version first (then by repository name).
pub struct Pool {
    by_name: BTreeMap<String, Vec<Candidate>>,
    /// Provided name -> (provider name, index into `by_name[provider]`).
    providers: BTreeMap<String, Vec<(String, usize)>>,
}

impl Pool {
    pub fn new(candidates: Vec<Candidate>) -> Pool {
        let mut by_name: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        for c in candidates {
            by_name.entry(c.name.clone()).or_default().push(c);
        }
        for list in by_name.values_mut() {
            list.sort_by(|a, b| {
                b.version
                    .cmp(&a.version)
                    .then_with(|| a.origin.repository.cmp(&b.origin.repository))
            });
        }
        let mut providers: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
        for (name, list) in &by_name {
            for (i, c) in list.iter().enumerate() {
                for (provided, _) in &c.provides {
                    providers
                        .entry(provided.clone())
                        .or_default()
                        .push((name.clone(), i));
                }
            }
        }
        Pool { by_name, providers }
    }

    /// The package `dep` picks by rules 4 and 5.
    fn best(&self, dep: &Dependency) -> Option<&Candidate> {
        if let Some(c) = self
            .by_name
            .get(&dep.name)
            .and_then(|list| list.iter().find(|c| dep.allows(Some(&c.version))))
        {
            return Some(c);
        }
        // Providers are listed by provider name, then version (highest first); the
        // first of the best is taken.
        self.providers
            .get(&dep.name)?
            .iter()
            .map(|(name, i)| &self.by_name[name][*i])
            .filter(|c| provides(c, dep))
            .min_by_key(|c| c.preference)
    }

    /// The newest real package named `name`.
    fn newest(&self, name: &str) -> Option<&Candidate> {
        self.by_name.get(name)?.first()
    }

    fn versions_of(&self, name: &str) -> Vec<String> {
        self.by_name
            .get(name)
            .map(|l| l.iter().map(|c| c.version.to_string()).collect())
            .unwrap_or_default()
    }
}

/// Whether `c`'s `Provides` satisfy `dep`.
fn provides(c: &Candidate, dep: &Dependency) -> bool {
    provides_meet(&c.provides, dep)
}

/// Whether one of `provides` (a package's `Provides`) satisfies `dep`.
fn provides_meet(provides: &[(String, Option<Version>)], dep: &Dependency) -> bool {
    provides
        .iter()
        .any(|(name, version)| *name == dep.name && dep.allows(version.as_ref()))
}

/// What [`solve`] chose.
#[derive(Debug)]
pub struct Solution {
    /// The packages to install, by name.
    pub chosen: BTreeMap<String, Candidate>,
    /// The base image's packages kept in their place (rules 7 and 8), by name.
    pub from_base: BTreeMap<String, Version>,
}

/// Resolves `requested` against `pool`, on top of the `base` image's packages.
pub fn solve(
    pool: &Pool,
    requested: &[String],
    base: &BasePackages,
) -> Result<Solution, DebianError> {
    let mut chosen: BTreeMap<String, Candidate> = BTreeMap::new();
    let mut from_base: BTreeMap<String, Version> = BTreeMap::new();
    let mut queue: VecDeque<(Vec<String>, Vec<Dependency>)> = VecDeque::new();
    let mut names = requested.to_vec();
    names.sort();
    for name in names {
        queue.push_back((
            Vec::new(),
            vec![Dependency {
                name,
                constraint: None,
            }],
        ));
    }
    while let Some((chain, alternatives)) = queue.pop_front() {
        if alternatives.iter().any(|dep| chosen_meets(&chosen, dep)) {
            continue;
        }
        let requested_installed = match (chain.is_empty(), alternatives.as_slice()) {
            (true, [request]) => base.by_name.get(&request.name),
            _ => None,
        };
        if let Some(installed) = requested_installed {
            // Rules 8 and 9.
            match pool.newest(&installed.name) {
                Some(c) if c.version > installed.version => {}
                _ => {
                    from_base.insert(installed.name.clone(), installed.version.clone());
                    continue;
                }
            }
        } else if let Some(kept) = alternatives
            .iter()
            .find_map(|dep| base_meets(base, &chosen, dep))
        {
            // Rule 7.
            from_base.insert(kept.name.clone(), kept.version.clone());
            continue;
        }
        let pick = alternatives.iter().find_map(|dep| {
            // A package already chosen at a version outside the relation cannot be
            // chosen twice: try the next alternative.
            let c = pool.best(dep)?;
            (!chosen.contains_key(&c.name)).then_some(c)
        });
        let Some(c) = pick else {
            return Err(unsatisfiable(pool, &chosen, chain, &alternatives));
        };
        if let Some(installed) = base.by_name.get(&c.name) {
            if c.version < installed.version {
                return Err(downgrade(installed, c, &chain));
            }
        }
        let mut next_chain = chain.clone();
        next_chain.push(format!("{} {}", c.name, c.version));
        for group in c.dependencies()? {
            queue.push_back((next_chain.clone(), group));
        }
        chosen.insert(c.name.clone(), c.clone());
    }
    check_conflicts(&chosen)?;
    check_base_conflicts(&chosen, base)?;
    // Rule 10.
    for c in chosen.values() {
        for group in c.dependencies()? {
            let met = group
                .iter()
                .any(|dep| chosen_meets(&chosen, dep) || base_meets(base, &chosen, dep).is_some());
            if !met {
                let chain = vec![format!("{} {}", c.name, c.version)];
                return Err(unsatisfiable(pool, &chosen, chain, &group));
            }
        }
    }
    from_base.retain(|name, _| !chosen.contains_key(name));
    Ok(Solution { chosen, from_base })
}

/// Whether a chosen package meets `dep` (rule 2).
fn chosen_meets(chosen: &BTreeMap<String, Candidate>, dep: &Dependency) -> bool {
    chosen
        .get(&dep.name)
        .is_some_and(|c| dep.allows(Some(&c.version)))
        || chosen.values().any(|c| provides(c, dep))
}

/// The base package that meets `dep` (rule 7), unless a chosen package replaces it:
/// the one of that name, else the first provider by name.
fn base_meets<'b>(
    base: &'b BasePackages,
    chosen: &BTreeMap<String, Candidate>,
    dep: &Dependency,
) -> Option<&'b BasePackage> {
    let kept = |p: &&BasePackage| !chosen.contains_key(&p.name);
    base.by_name
        .get(&dep.name)
        .filter(kept)
        .filter(|p| dep.allows(Some(&p.version)))
        .or_else(|| {
            base.by_name
                .values()
                .filter(kept)
                .find(|p| provides_meet(&p.provides, dep))
        })
}

fn downgrade(installed: &BasePackage, candidate: &Candidate, chain: &[String]) -> DebianError {
    DebianError::Downgrade {
        package: installed.name.clone(),
        base_version: installed.version.to_string(),
        candidate_version: candidate.version.to_string(),
        chain: chain_text(chain),
    }
}

fn chain_text(chain: &[String]) -> String {
    if chain.is_empty() {
        "requested in the recipe".into()
    } else {
        format!("needed by {}", chain.join(" -> "))
    }
}

/// Rule 6: the first conflict among `chosen`, in name order.
fn check_conflicts(chosen: &BTreeMap<String, Candidate>) -> Result<(), DebianError> {
    for c in chosen.values() {
        for relation in c.conflicts()? {
            let by_name = chosen
                .get(&relation.name)
                .filter(|other| relation.allows(Some(&other.version)));
            let by_provides = || {
                chosen
                    .values()
                    .find(|other| other.name != c.name && provides(other, &relation))
            };
            if let Some(other) = by_name.filter(|o| o.name != c.name).or_else(by_provides) {
                return Err(DebianError::Conflict {
                    package: c.name.clone(),
                    version: c.version.to_string(),
                    relation: relation.to_string(),
                    other: other.name.clone(),
                    other_version: other.version.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Rule 6 against the base: a chosen package whose `Conflicts`/`Breaks` matches a base
/// package it does not replace, or a base package whose relations match a chosen one.
/// apt would remove the base's package; an image built on a base cannot, so it is an
/// error naming both.
fn check_base_conflicts(
    chosen: &BTreeMap<String, Candidate>,
    base: &BasePackages,
) -> Result<(), DebianError> {
    let kept = || {
        base.by_name
            .values()
            .filter(|p| !chosen.contains_key(&p.name))
    };
    let base_matches = |p: &BasePackage, relation: &Dependency| {
        (p.name == relation.name && relation.allows(Some(&p.version)))
            || provides_meet(&p.provides, relation)
    };
    let conflict = |chosen: &Candidate, base: &BasePackage, declared_by_base: bool, relation| {
        let by = if declared_by_base {
            format!("the base's `{}`", base.name)
        } else {
            format!("`{}`", chosen.name)
        };
        DebianError::BaseConflict {
            installing: format!("`{}` {}", chosen.name, chosen.version),
            base_package: base.name.clone(),
            base_version: base.version.to_string(),
            declared: format!("{by} declares `Conflicts`/`Breaks: {relation}`"),
        }
    };
    for c in chosen.values() {
        for relation in c.conflicts()? {
            if let Some(p) = kept().find(|p| p.name != c.name && base_matches(p, &relation)) {
                return Err(conflict(c, p, false, relation.to_string()));
            }
        }
    }
    for p in kept() {
        for relation in &p.conflicts {
            let by_name = chosen
                .get(&relation.name)
                .filter(|c| relation.allows(Some(&c.version)));
            let by_provides = || chosen.values().find(|c| provides(c, relation));
            if let Some(c) = by_name.or_else(by_provides).filter(|c| c.name != p.name) {
                return Err(conflict(c, p, true, relation.to_string()));
            }
        }
    }
    Ok(())
}

fn unsatisfiable(
    pool: &Pool,
    chosen: &BTreeMap<String, Candidate>,
    chain: Vec<String>,
    alternatives: &[Dependency],
) -> DebianError {
    let wanted = alternatives
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" | ");
    let why = alternatives
        .iter()
        .map(|d| match chosen.get(&d.name) {
            Some(c) => format!("`{}` is already chosen at {}", d.name, c.version),
            None => match pool.versions_of(&d.name) {
                v if v.is_empty() => format!("no package `{}` (nor one providing it)", d.name),
                v => format!("`{}` has only {}", d.name, v.join(", ")),
            },
        })
        .collect::<Vec<_>>()
        .join("; ");
    DebianError::Unsatisfiable {
        wanted,
        chain: chain_text(&chain),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::index::parse_provides;
    use crate::debian::version::Version;
    use crate::digest::Sha256Digest;

    fn pkg(name: &str, version: &str, depends: &str, provides: &str) -> Candidate {
        Candidate {
            name: name.into(),
            version: Version::parse(version).unwrap(),
            arch_all: false,
            filename: format!("pool/{name}_{version}.deb"),
            sha256: Sha256Digest::of(name.as_bytes()),
            size: 1,
            depends: depends.into(),
            conflicts: String::new(),
            provides: parse_provides(provides).unwrap(),
            preference: crate::debian::index::ProviderPreference::of(None, None, Some("optional")),
            origin: std::sync::Arc::new(crate::debian::index::IndexOrigin {
                repository: "r".into(),
                path: "main/binary-amd64/Packages".into(),
                sha256: Sha256Digest::of(b""),
            }),
        }
    }

    fn chosen(pool: Vec<Candidate>, req: &[&str]) -> Result<Vec<String>, DebianError> {
        let req: Vec<String> = req.iter().map(|s| s.to_string()).collect();
        solve(&Pool::new(pool), &req, &BasePackages::default()).map(|s| {
            s.chosen
                .values()
                .map(|c| format!("{}={}", c.name, c.version))
                .collect()
        })
    }

    #[test]
    fn highest_satisfying_version_and_first_alternative() {
        let pool = vec![
            pkg("app", "1", "libc (>= 2), mta | mail-transport", ""),
            pkg("libc", "1", "", ""),
            pkg("libc", "3", "", ""),
            pkg("libc", "2", "", ""),
            pkg("postfix", "1", "", "mail-transport"),
            pkg("exim", "1", "", "mail-transport"),
        ];
        assert_eq!(
            chosen(pool, &["app"]).unwrap(),
            ["app=1", "exim=1", "libc=3"]
        );
    }

    #[test]
    fn versioned_dependencies_need_versioned_provides() {
        let pool = vec![
            pkg("app", "1", "virt (>= 2)", ""),
            pkg("a", "1", "", "virt"),
            pkg("b", "1", "", "virt (= 2)"),
        ];
        assert_eq!(chosen(pool, &["app"]).unwrap(), ["app=1", "b=1"]);
    }

    #[test]
    fn a_chosen_package_or_provider_satisfies_later_dependencies() {
        let pool = vec![
            pkg("a", "1", "x | y", ""),
            pkg("b", "1", "y", ""),
            pkg("x", "1", "", ""),
            pkg("y", "1", "", ""),
            pkg("z", "1", "", "x"),
        ];
        // `a` picks x (first alternative); `b` still needs y. `z` provides x, but
        // x the real package wins.
        assert_eq!(
            chosen(pool, &["b", "a"]).unwrap(),
            ["a=1", "b=1", "x=1", "y=1"]
        );
    }

    #[test]
    fn a_missing_dependency_names_the_chain() {
        let pool = vec![
            pkg("top", "1", "mid", ""),
            pkg("mid", "2", "leaf (>= 5) | other", ""),
            pkg("leaf", "1", "", ""),
        ];
        let err = chosen(pool, &["top"]).unwrap_err().to_string();
        assert!(err.contains("leaf (>= 5) | other"), "{err}");
        assert!(err.contains("needed by top 1 -> mid 2"), "{err}");
        assert!(err.contains("`leaf` has only 1"), "{err}");
        assert!(err.contains("no package `other`"), "{err}");
        let err = chosen(vec![], &["nope"]).unwrap_err().to_string();
        assert!(err.contains("requested in the recipe"), "{err}");
    }

    #[test]
    fn a_virtual_package_goes_to_the_provider_apt_would_choose() {
        use crate::debian::index::ProviderPreference;
        let with = |mut c: Candidate, essential, priority| {
            c.preference = ProviderPreference::of(essential, None, priority);
            c
        };
        let awk = || {
            vec![
                pkg("app", "1", "awk", ""),
                with(pkg("gawk", "1", "", "awk"), None, Some("optional")),
                with(pkg("mawk", "1", "", "awk"), None, Some("required")),
                with(pkg("original-awk", "1", "", "awk"), None, Some("optional")),
            ]
        };
        // By priority, not by name: `mawk` (required) before `gawk` (optional).
        assert_eq!(chosen(awk(), &["app"]).unwrap(), ["app=1", "mawk=1"]);
        // `Essential: yes` comes before any priority.
        let mut pool = awk();
        pool.push(with(
            pkg("busybox-awk", "1", "", "awk"),
            Some("yes"),
            Some("optional"),
        ));
        assert_eq!(chosen(pool, &["app"]).unwrap(), ["app=1", "busybox-awk=1"]);
        // A package without a priority comes last; among equals, the first by name.
        let pool = vec![
            pkg("app", "1", "awk", ""),
            with(pkg("a-awk", "1", "", "awk"), None, None),
            with(pkg("z-awk", "1", "", "awk"), None, Some("extra")),
            with(pkg("y-awk", "1", "", "awk"), None, Some("extra")),
        ];
        assert_eq!(chosen(pool, &["app"]).unwrap(), ["app=1", "y-awk=1"]);
    }

    #[test]
    fn conflicting_packages_are_an_error_naming_both_but_a_conflict_on_what_one_provides_is_not() {
        let pool = || {
            vec![
                pkg("app", "1", "mta, other", ""),
                // Conflicts with the virtual name it provides itself, as MTAs do.
                with_conflicts(pkg("postfix", "3", "", "mta"), "mta"),
                pkg("other", "1", "", ""),
            ]
        };
        assert_eq!(
            chosen(pool(), &["app"]).unwrap(),
            ["app=1", "other=1", "postfix=3"]
        );
        // `Breaks` on a version range that the chosen `other` is in.
        let mut breaking = pool();
        breaking[2] = with_conflicts(pkg("other", "1", "", ""), "postfix (<< 4)");
        let err = chosen(breaking, &["app"]).unwrap_err().to_string();
        assert!(
            err.contains("packages `other` 1 and `postfix` 3 cannot be installed together")
                && err.contains("postfix (<< 4)"),
            "{err}"
        );
        // Out of the range: no conflict. And a conflict through `Provides`.
        let mut fine = pool();
        fine[2] = with_conflicts(pkg("other", "1", "", ""), "postfix (<< 3)");
        assert!(chosen(fine, &["app"]).is_ok());
        let mut provided = pool();
        provided[2] = with_conflicts(pkg("other", "1", "", ""), "mta");
        let err = chosen(provided, &["app"]).unwrap_err().to_string();
        assert!(err.contains("`other` 1 and `postfix` 3"), "{err}");
    }

    fn with_conflicts(mut c: Candidate, conflicts: &str) -> Candidate {
        c.conflicts = conflicts.into();
        c
    }

    fn base(packages: &[(&str, &str, &str)]) -> BasePackages {
        BasePackages {
            by_name: packages
                .iter()
                .map(|(name, version, provides)| {
                    let provides = pkg(name, version, "", provides).provides;
                    let version = Version::parse(version).unwrap();
                    let name = name.to_string();
                    (
                        name.clone(),
                        BasePackage {
                            name,
                            version,
                            provides,
                            conflicts: Vec::new(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The packages chosen and those kept from `base`.
    fn on_base(
        pool: Vec<Candidate>,
        req: &[&str],
        base: &BasePackages,
    ) -> Result<(Vec<String>, Vec<String>), String> {
        let req: Vec<String> = req.iter().map(|s| s.to_string()).collect();
        let s = solve(&Pool::new(pool), &req, base).map_err(|e| e.to_string())?;
        let show = |(name, version): (&String, &Version)| format!("{name}={version}");
        Ok((
            s.chosen
                .iter()
                .map(|(n, c)| show((n, &c.version)))
                .collect(),
            s.from_base.iter().map(show).collect(),
        ))
    }

    #[test]
    fn a_dependency_the_base_meets_is_not_installed_again() {
        let pool = || {
            vec![
                pkg("app", "1", "libfoo (>= 1.5), libc6", ""),
                pkg("libfoo", "2.0-1", "libc6", ""),
                pkg("libc6", "2.36-9", "", ""),
            ]
        };
        let installed = base(&[("libfoo", "2.0-1", ""), ("libc6", "2.36-9+deb12u9", "")]);
        assert_eq!(
            on_base(pool(), &["app"], &installed).unwrap(),
            (
                vec!["app=1".to_string()],
                vec!["libc6=2.36-9+deb12u9".to_string(), "libfoo=2.0-1".into()]
            )
        );
        // Met through the base's `Provides`.
        let installed = base(&[
            ("libfoo-ng", "7", "libfoo (= 2.5)"),
            ("libc6", "2.36-9", ""),
        ]);
        assert_eq!(on_base(pool(), &["app"], &installed).unwrap().0, ["app=1"]);
        // A version the base's does not meet: installed, upgrading it.
        let installed = base(&[("libfoo", "1.0-1", ""), ("libc6", "2.36-9", "")]);
        assert_eq!(
            on_base(pool(), &["app"], &installed).unwrap().0,
            ["app=1", "libfoo=2.0-1"]
        );
    }

    #[test]
    fn a_requested_package_of_the_base_is_kept_or_upgraded_and_a_downgrade_refused() {
        let pool = || vec![pkg("libfoo", "2.0-1", "", "")];
        let kept = on_base(pool(), &["libfoo"], &base(&[("libfoo", "2.0-1", "")]));
        assert_eq!(kept.unwrap(), (vec![], vec!["libfoo=2.0-1".to_string()]));
        let upgraded = on_base(pool(), &["libfoo"], &base(&[("libfoo", "1.0-1", "")]));
        assert_eq!(
            upgraded.unwrap(),
            (vec!["libfoo=2.0-1".to_string()], vec![])
        );
        // Newer in the base than in the repositories: kept, as apt keeps it.
        let newer = on_base(pool(), &["libfoo"], &base(&[("libfoo", "3.0-1", "")]));
        assert_eq!(newer.unwrap(), (vec![], vec!["libfoo=3.0-1".to_string()]));
        // A dependency that needs an older version than the base's.
        let pool = vec![
            pkg("app", "1", "libfoo (<< 3)", ""),
            pkg("libfoo", "2.0-1", "", ""),
        ];
        let err = on_base(pool, &["app"], &base(&[("libfoo", "3.0-1", "")])).unwrap_err();
        assert!(
            err.contains("at 3.0-1")
                && err.contains("only at 2.0-1")
                && err.contains("needed by app 1"),
            "{err}"
        );
    }

    #[test]
    fn an_upgrade_that_breaks_what_an_earlier_dependency_relied_on_is_an_error() {
        // `app` is met by the base's libfoo 2.0; the request for `libfoo` upgrades it.
        let pool = vec![
            pkg("app", "1", "libfoo (<< 3)", ""),
            pkg("libfoo", "3.0-1", "", ""),
        ];
        let err = on_base(pool, &["app", "libfoo"], &base(&[("libfoo", "2.0-1", "")])).unwrap_err();
        assert!(
            err.contains("libfoo (<< 3)") && err.contains("`libfoo` is already chosen at 3.0-1"),
            "{err}"
        );
    }

    #[test]
    fn conflicts_and_breaks_against_the_base_are_errors_naming_both_sides() {
        let libc = || pkg("libc6", "2.36-9", "", "");
        // A chosen package that breaks what the base has installed.
        let breaking = with_conflicts(pkg("newtool", "2", "libc6", ""), "oldtool (<< 2)");
        let installed = base(&[("oldtool", "1.5", ""), ("libc6", "2.36-9", "")]);
        let err = on_base(vec![breaking.clone(), libc()], &["newtool"], &installed).unwrap_err();
        assert!(
            err.contains(
                "`newtool` 2 cannot be installed on the base image, which has `oldtool` 1.5"
            ) && err.contains("`newtool` declares `Conflicts`/`Breaks: oldtool (<< 2)`"),
            "{err}"
        );
        // Through a virtual package the base's package provides.
        let mta = with_conflicts(
            pkg("postfix", "3", "", "mail-transport-agent"),
            "mail-transport-agent",
        );
        let installed = base(&[("exim4", "4.96", "mail-transport-agent")]);
        let err = on_base(vec![mta], &["postfix"], &installed).unwrap_err();
        assert!(err.contains("which has `exim4` 4.96"), "{err}");
        // A base package that breaks a chosen one.
        let mut installed = base(&[("guard", "1", "")]);
        installed.by_name.get_mut("guard").unwrap().conflicts = vec![Dependency {
            name: "libc6".into(),
            constraint: None,
        }];
        let err = on_base(vec![libc()], &["libc6"], &installed).unwrap_err();
        assert!(
            err.contains("the base's `guard` declares `Conflicts`/`Breaks: libc6`"),
            "{err}"
        );
        // Upgrading the base's package itself replaces it: no conflict with the old one.
        let installed = base(&[("oldtool", "1.5", "")]);
        let upgrade = with_conflicts(pkg("oldtool", "2", "", ""), "oldtool (<< 2)");
        assert_eq!(
            on_base(vec![upgrade], &["oldtool"], &installed).unwrap().0,
            ["oldtool=2"]
        );
    }

    #[test]
    fn request_order_does_not_matter() {
        let pool = || {
            vec![
                pkg("a", "1", "v", ""),
                pkg("b", "1", "v", ""),
                pkg("p", "1", "", "v"),
                pkg("q", "1", "", "v"),
            ]
        };
        assert_eq!(
            chosen(pool(), &["a", "b"]).unwrap(),
            chosen(pool(), &["b", "a"]).unwrap()
        );
        assert_eq!(chosen(pool(), &["b", "a"]).unwrap(), ["a=1", "b=1", "p=1"]);
    }
}
