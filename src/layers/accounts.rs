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
use crate::recipe::{did_you_mean, Accounts, ConfigUser, Diagnostic, Recipe};
use std::sync::Arc;

/// A file of the accounts layer: absolute path, content, origin.
pub(super) type AccountFile = (&'static str, String, Origin);

/// `/etc/passwd` and `/etc/group` of the accounts layer: the recipe's `accounts:`
/// merged with the packages' accounts when they have some, else with the base
/// image's files.
pub(super) fn account_files(
    recipe: &Recipe,
    packages: Option<&PackageAccounts>,
    base: Option<&BaseFs>,
) -> Result<[AccountFile; 2], TreeError> {
    let (users, groups) = recipe_lines(recipe.accounts.as_ref());
    if let Some(packages) = packages {
        return with_packages(recipe, &users, &groups, packages, base);
    }
    let base_file = |key: &str| base.and_then(|b| b.kept_text(key));
    Ok([
        (
            "/etc/passwd",
            merged_account_file(
                base_file("etc/passwd").as_deref(),
                &users,
                "root:x:0:0:root:/root:/sbin/nologin",
            ),
            Origin::Accounts,
        ),
        (
            "/etc/group",
            merged_account_file(base_file("etc/group").as_deref(), &groups, "root:x:0:"),
            Origin::Accounts,
        ),
    ])
}

/// The `accounts:` users and groups as (name, id, `/etc/passwd` or `/etc/group` line).
type AccountLines<'a> = Vec<(&'a str, u32, String)>;

fn recipe_lines(accounts: Option<&Accounts>) -> (AccountLines<'_>, AccountLines<'_>) {
    let (users, groups) = accounts
        .map(|a| (a.users.as_slice(), a.groups.as_slice()))
        .unwrap_or_default();
    let users = users
        .iter()
        .map(|u| {
            let line = format!(
                "{}:x:{}:{}:{}:{}:{}",
                u.name, u.uid, u.gid, u.gecos, u.home, u.shell
            );
            (u.name.as_str(), u.uid, line)
        })
        .collect();
    let groups = groups
        .iter()
        .map(|g| {
            let line = format!("{}:x:{}:{}", g.name, g.gid, g.members.join(","));
            (g.name.as_str(), g.gid, line)
        })
        .collect();
    (users, groups)
}

/// `config.user` in numbers for the image config. A name the recipe's `accounts:`
/// does not define is looked up in the image's `/etc/passwd` as the accounts layer
/// writes it (the packages' and the base's users), else in the base image's own:
/// `uid:gid` of its entry, or an error at `config.user` listing the users there are.
/// Computed from the recipe, the packages and the base alone, so that a build that
/// replays its layers from the cache gets the same answer.
pub fn image_user(
    recipe: &Recipe,
    packages: Option<&PackageAccounts>,
    base: Option<&BaseFs>,
) -> Result<Option<String>, TreeError> {
    let (name, span) = match &recipe.config.user {
        None => return Ok(None),
        Some(ConfigUser::Ids(ids)) => return Ok(Some(ids.clone())),
        Some(ConfigUser::Named { name, span }) => (name, *span),
    };
    let passwd = if recipe.accounts.is_some() || packages.is_some() {
        let [(_, passwd, _), _] = account_files(recipe, packages, base)?;
        Some(passwd)
    } else {
        base.and_then(|b| b.kept_text("etc/passwd"))
    };
    let passwd = passwd.unwrap_or_default();
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 4)
        .collect();
    if let Some(fields) = entries.iter().find(|f| f[0] == name) {
        return Ok(Some(format!("{}:{}", fields[2], fields[3])));
    }
    let known: Vec<&str> = entries.iter().map(|f| f[0]).collect();
    let listed = if known.is_empty() {
        "the image has no /etc/passwd".to_string()
    } else {
        format!("its users: {}", known.join(", "))
    };
    let close = did_you_mean(name, known.iter().copied())
        .map(|k| format!("did you mean `{k}`? "))
        .unwrap_or_default();
    Err(TreeError(Box::new(
        Diagnostic::new(
            &recipe.file,
            span,
            format!(
                "`config.user` names user `{name}`, which neither `accounts.users`, the packages nor the base image define ({listed})"
            ),
        )
        .with_hint(format!(
            "{close}name a user of the image's /etc/passwd, add it to `accounts.users`, or write numeric `uid` or `uid:gid`"
        )),
    )))
}

/// The two files for the recipe's `users` and `groups` lines (name, id, line) and the
/// packages' accounts.
fn with_packages(
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

/// `/etc/passwd` or `/etc/group`: the base image's entries (if it has the file) that
/// the recipe does not redefine by name, in their order, then the recipe's `entries`
/// (name, id, line). A `root` entry (`root_line`) comes first unless the base or the
/// recipe has an entry with id 0.
fn merged_account_file(
    base: Option<&str>,
    entries: &[(&str, u32, String)],
    root_line: &str,
) -> String {
    let base_lines: Vec<&str> = base
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let name = l.split(':').next().unwrap_or_default();
            !entries.iter().any(|(n, _, _)| *n == name)
        })
        .collect();
    let base_has_root = base_lines.iter().any(|l| l.split(':').nth(2) == Some("0"));
    let mut out = String::new();
    if !base_has_root && !entries.iter().any(|(_, id, _)| *id == 0) {
        out.push_str(root_line);
        out.push('\n');
    }
    for line in base_lines {
        out.push_str(line);
        out.push('\n');
    }
    for (_, _, line) in entries {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_extend_the_base_files_and_replace_entries_by_name() {
        let recipe = [
            ("app", 100, "app:x:100:100::/home/app:/bin/sh".to_string()),
            (
                "svc",
                200,
                "svc:x:200:200::/home/svc:/sbin/nologin".to_string(),
            ),
        ];
        let root = "root:x:0:0:root:/root:/sbin/nologin";
        let base = "root:x:0:0:root:/root:/bin/bash\napp:x:9:9::/old:/bin/false\nnobody:x:65534:65534::/:/sbin/nologin\n";
        assert_eq!(
            merged_account_file(Some(base), &recipe, root),
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/sbin/nologin\napp:x:100:100::/home/app:/bin/sh\nsvc:x:200:200::/home/svc:/sbin/nologin\n"
        );
        // Without a base, the documented defaults: root first, then the recipe's.
        assert_eq!(
            merged_account_file(None, &recipe[..1], root),
            format!("{root}\napp:x:100:100::/home/app:/bin/sh\n")
        );
    }
}
