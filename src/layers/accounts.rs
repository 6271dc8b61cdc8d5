//! `/etc/passwd` and `/etc/group` when Debian packages bring accounts
//! ([`crate::debian::sysusers`]): they start as the base image's files, else as
//! `base-passwd`'s master files (as its `postinst` copies them only when there is no
//! `/etc/passwd`), else empty; the recipe's `accounts:` then replace the entries of
//! their names (a name the starting files give another id is an error naming both),
//! and the packages' sysusers.d lines add theirs last, so that ids they allocate
//! avoid the recipe's and a package asking for a recipe user gets it. Both files are
//! generated from the master files and fragments, in place of the scripts of
//! `base-passwd` (else of the first package shipping a fragment).

use super::{GeneratedFrom, Origin, TreeError};
use crate::base::BaseFs;
use crate::debian::source_name;
use crate::debian::sysusers::{AccountDb, PackageAccounts, GROUP_MASTER, PASSWD_MASTER};
use crate::recipe::{Diagnostic, Recipe};
use std::sync::Arc;

/// A file of the accounts layer: absolute path, content, origin.
pub(super) type AccountFile = (&'static str, String, Origin);

/// The two files for the recipe's `users` and `groups` lines (name, id, line) and the
/// packages' accounts.
pub(super) fn with_packages(
    recipe: &Recipe,
    users: &[(&str, u32, String)],
    groups: &[(&str, u32, String)],
    packages: &PackageAccounts,
    base: Option<&BaseFs>,
) -> Result<[AccountFile; 2], TreeError> {
    let base_file = |key: &str| base.and_then(|b| b.kept_text(key));
    let mut db = match (base_file("etc/passwd"), &packages.masters) {
        (Some(passwd), _) => AccountDb::read(
            &passwd,
            &base_file("etc/group").unwrap_or_default(),
            "the base image's /etc/passwd",
            "the base image's /etc/group",
        ),
        (None, Some(m)) => AccountDb::read(
            &m.passwd,
            &m.group,
            &format!("base-passwd's {PASSWD_MASTER}"),
            &format!("base-passwd's {GROUP_MASTER}"),
        ),
        (None, None) => AccountDb::default(),
    };
    let span = recipe
        .packages
        .as_ref()
        .map_or_else(Default::default, |p| p.span);
    let error = |e: crate::debian::sysusers::AccountConflict| {
        TreeError(Box::new(
            Diagnostic::new(&recipe.file, span, e.0).with_hint(
                "give the account the same id in `accounts:` as the package does, or leave it to the package",
            ),
        ))
    };
    for (_, _, line) in groups {
        db.set_group(line, "`accounts.groups`").map_err(error)?;
    }
    for (_, _, line) in users {
        db.set_user(line, "`accounts.users`").map_err(error)?;
    }
    db.apply(&packages.fragments).map_err(error)?;
    let line = recipe.packages.as_ref().map_or(0, |p| {
        p.requested
            .iter()
            .find(|r| r.name == packages.by)
            .map_or(p.span.line, |r| r.span.line)
    });
    let origin = |master: Option<(&str, crate::digest::Sha256Digest)>| {
        let fragments = packages
            .fragments
            .iter()
            .map(|f| (f.path.clone(), f.sha256));
        Origin::Generated(Arc::new(GeneratedFrom {
            by: source_name(&packages.by).into(),
            line,
            inputs: master
                .map(|(path, sha256)| (path.to_string(), sha256))
                .into_iter()
                .chain(fragments)
                .collect(),
        }))
    };
    let from_masters = base_file("etc/passwd").is_none();
    let masters = packages.masters.as_ref().filter(|_| from_masters);
    Ok([
        (
            "/etc/passwd",
            db.passwd(),
            origin(masters.map(|m| (PASSWD_MASTER, m.passwd_sha256))),
        ),
        (
            "/etc/group",
            db.group(),
            origin(masters.map(|m| (GROUP_MASTER, m.group_sha256))),
        ),
    ])
}
