//! `accounts:` — groups and users for `/etc/group` and `/etc/passwd`. Names and ids
//! are unique; a user's primary gid is 0 or one of the listed groups.
//!
//! Defaults: `home` is `/root` for uid 0 and `/home/<name>` otherwise; `shell` is
//! `/sbin/nologin`; `gecos` is empty.

use super::context::{span_of, Cx, Unique};
use super::model::{Accounts, ConfigUser, Group, ImagePath, User};
use super::raw::{RawAccounts, RawGroup, RawUser};
use super::values::{self, account_name, list, passwd_field};
use super::Diagnostic;
use serde_saphyr::Spanned;

const DEFAULT_SHELL: &str = "/sbin/nologin";

pub(super) fn parse(cx: &Cx, raw: Option<RawAccounts>) -> Result<Option<Accounts>, Diagnostic> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let groups = groups(cx, raw.groups.unwrap_or_default())?;
    let users = users(cx, raw.users.unwrap_or_default(), &groups)?;
    Ok(Some(Accounts { groups, users }))
}

fn groups(cx: &Cx, raw: Vec<Spanned<RawGroup>>) -> Result<Vec<Group>, Diagnostic> {
    let mut names = Unique::new("group name");
    let mut gids = Unique::new("group gid");
    let mut groups = Vec::with_capacity(raw.len());
    for group in raw {
        let at = span_of(&group);
        let RawGroup { name, gid, members } = group.value;
        let name = cx.require(
            name,
            at,
            "group has no `name`",
            "add `name:`, e.g. `name: app`",
        )?;
        cx.check(&name, |n| account_name("group", n))?;
        names.insert(cx, name.value.clone(), span_of(&name))?;
        let gid = cx.require(
            gid,
            at,
            format!("group `{}` has no `gid`", name.value),
            "add a numeric `gid:`, e.g. `gid: 65532`",
        )?;
        gids.insert(cx, gid.value, span_of(&gid))?;
        let members = members
            .unwrap_or_default()
            .into_iter()
            .map(|member| {
                cx.check(&member, |m| account_name("member", m))?;
                Ok(member.value)
            })
            .collect::<Result<_, Diagnostic>>()?;
        groups.push(Group {
            name: name.value,
            gid: gid.value,
            members,
        });
    }
    Ok(groups)
}

fn users(cx: &Cx, raw: Vec<Spanned<RawUser>>, groups: &[Group]) -> Result<Vec<User>, Diagnostic> {
    let mut names = Unique::new("user name");
    let mut uids = Unique::new("user uid");
    let mut users = Vec::with_capacity(raw.len());
    for user in raw {
        let at = span_of(&user);
        let RawUser {
            name,
            uid,
            gid,
            home,
            shell,
            gecos,
        } = user.value;
        let name = cx.require(
            name,
            at,
            "user has no `name`",
            "add `name:`, e.g. `name: app`",
        )?;
        cx.check(&name, |n| account_name("user", n))?;
        names.insert(cx, name.value.clone(), span_of(&name))?;
        let uid = cx.require(
            uid,
            at,
            format!("user `{}` has no `uid`", name.value),
            "add a numeric `uid:`, e.g. `uid: 65532`",
        )?;
        uids.insert(cx, uid.value, span_of(&uid))?;
        let gid = cx.require(
            gid,
            at,
            format!("user `{}` has no `gid`", name.value),
            "add the numeric `gid:` of the user's primary group, e.g. `gid: 65532`",
        )?;
        if gid.value != 0 && !groups.iter().any(|g| g.gid == gid.value) {
            let defined = if groups.is_empty() {
                "no groups are defined".to_string()
            } else {
                let gids: Vec<String> = groups
                    .iter()
                    .map(|g| format!("{} ({})", g.gid, g.name))
                    .collect();
                format!("defined gids: {}", gids.join(", "))
            };
            return Err(cx
                .error(
                    span_of(&gid),
                    format!(
                        "user `{}` has gid {}, but no group in `accounts.groups` has it ({defined})",
                        name.value, gid.value
                    ),
                )
                .with_hint(format!(
                    "add `{{ name: {}, gid: {} }}` to `accounts.groups`, or use the gid of a listed group",
                    name.value, gid.value
                )));
        }
        let home = match home {
            Some(home) => {
                cx.check(&home, |h| passwd_field("home", h))?;
                cx.check(&home, |h| values::image_path("home", h))?
            }
            None if uid.value == 0 => ImagePath::root().join("root"),
            None => ImagePath::root().join(&format!("home/{}", name.value)),
        };
        let shell = match shell {
            Some(shell) => {
                cx.check(&shell, |s| passwd_field("shell", s))?;
                cx.check(&shell, |s| values::image_path("shell", s))?;
                shell.value
            }
            None => DEFAULT_SHELL.to_string(),
        };
        let gecos = match gecos {
            Some(gecos) => {
                cx.check(&gecos, |g| passwd_field("gecos", g))?;
                gecos.value
            }
            None => String::new(),
        };
        users.push(User {
            name: name.value,
            uid: uid.value,
            gid: gid.value,
            home,
            shell,
            gecos,
        });
    }
    Ok(users)
}

/// Resolves `config.user`: a user name of `accounts:` becomes `uid:gid`; `uid` and
/// `uid:gid` in digits are kept as written; another name waits for the image's
/// accounts when packages or a base image may define it (`accounts_elsewhere`).
pub(super) fn resolve_user(
    cx: &Cx,
    user: &Spanned<String>,
    accounts: Option<&Accounts>,
    accounts_elsewhere: bool,
) -> Result<ConfigUser, Diagnostic> {
    let text = user.value.as_str();
    let numeric = |s: &str| !s.is_empty() && s.parse::<u32>().is_ok();
    let is_numeric = match text.split_once(':') {
        Some((uid, gid)) => numeric(uid) && numeric(gid),
        None => numeric(text),
    };
    if is_numeric {
        return Ok(ConfigUser::Ids(text.to_string()));
    }
    let users = accounts.map(|a| a.users.as_slice()).unwrap_or_default();
    if let Some(found) = users.iter().find(|u| u.name == text) {
        return Ok(ConfigUser::Ids(format!("{}:{}", found.uid, found.gid)));
    }
    if accounts_elsewhere && !text.contains(':') {
        return Ok(ConfigUser::Named {
            name: text.to_string(),
            span: span_of(user),
        });
    }
    let known = users.iter().map(|u| u.name.as_str());
    let defined = if users.is_empty() {
        "no users are defined in `accounts.users`".to_string()
    } else {
        format!("defined users: {}", list(known.clone()))
    };
    let hint = match values::did_you_mean(text, known) {
        Some(close) => format!("did you mean `{close}`?"),
        None => "name a user from `accounts.users`, or write numeric `uid` or `uid:gid` (e.g. `65532:65532`)".to_string(),
    };
    Err(cx
        .error(
            span_of(user),
            format!("`config.user` names user `{text}`, which is not defined ({defined})"),
        )
        .with_hint(hint))
}
