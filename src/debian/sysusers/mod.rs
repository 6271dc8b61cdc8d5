//! Users and groups of the packages, without running a script: `base-passwd`'s master
//! files, which its `postinst` copies to `/etc/passwd` and `/etc/group` on a first
//! install, and each package's `usr/lib/sysusers.d/*.conf` fragments, which the
//! package's `postinst` hands to `systemd-sysusers`.
//!
//! [`configure`] reads them from the installed packages (fragments in file-name
//! order, as `systemd-sysusers` reads them; lines cairn cannot honour become warnings
//! naming package, file and line). [`AccountDb::apply`] then adds their users and
//! groups as `systemd-sysusers` 252 (bookworm's) does, byte for byte in
//! `/etc/passwd` and `/etc/group` (a test holds the real tool's output): groups
//! first (`g` lines, then groups `m` lines name that nothing defines), then users
//! (`u` lines, then users `m` lines name), each in the order read; an id given is
//! used; an id left `-` is allocated from one cursor that moves down through the `r`
//! ranges (default 1-999) and skips every id in use as a uid or gid, a user's group
//! taking the same number as the user; `m` appends the user to the group's members.
//! Unlike the tool, two sources giving one name different ids, or an id given that
//! another name holds, are errors rather than silently resolved, so an image never
//! holds files owned by an id its package did not ask for.

use super::{DebianError, InstalledPackage, InstalledPackages};
use crate::digest::Sha256Digest;
use crate::snapshot::SourceEntryKind;
use std::sync::Arc;

/// The package whose master files make the first `/etc/passwd` and `/etc/group`.
pub const BASE_PASSWD: &str = "base-passwd";
pub const PASSWD_MASTER: &str = "/usr/share/base-passwd/passwd.master";
pub const GROUP_MASTER: &str = "/usr/share/base-passwd/group.master";
/// Where packages ship sysusers fragments (before merged /usr: also `lib/...`).
const FRAGMENT_DIRS: [&str; 2] = ["usr/lib/sysusers.d/", "lib/sysusers.d/"];
/// `systemd-sysusers`' default shell and home for a user that names none.
const NOLOGIN: &str = "/usr/sbin/nologin";
/// The default allocation range when no `r` line gives one: bookworm's
/// `SYSTEM_UID_MAX` (999) down to 1.
const DEFAULT_RANGE: (u32, u32) = (1, 999);

/// The package accounts of an image: what [`AccountDb::apply`] adds.
#[derive(Debug, Clone)]
pub struct PackageAccounts {
    /// `base-passwd`'s `passwd.master` and `group.master`, when it is installed.
    pub masters: Option<Masters>,
    /// Every fragment, in file-name order.
    pub fragments: Vec<Fragment>,
    /// The package whose script cairn does in its place: `base-passwd` when installed,
    /// else the first package (by name) shipping a fragment.
    pub by: String,
}

#[derive(Debug, Clone)]
pub struct Masters {
    pub passwd: String,
    pub passwd_sha256: Sha256Digest,
    pub group: String,
    pub group_sha256: Sha256Digest,
}

/// One sysusers.d file of a package, its lines parsed.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub package: String,
    /// Absolute image path (merged /usr: `/usr/lib/sysusers.d/<name>.conf`).
    pub path: String,
    pub sha256: Sha256Digest,
    /// The lines cairn honours, with their line numbers.
    pub lines: Vec<(u32, Line)>,
}

/// A sysusers.d line cairn honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `u NAME ID GECOS HOME SHELL`: `uid` none for `-`; `group` from `UID:GROUP`.
    User {
        name: String,
        uid: Option<u32>,
        group: Option<GroupRef>,
        gecos: Option<String>,
        home: Option<String>,
        shell: Option<String>,
    },
    /// `g NAME ID`.
    Group { name: String, gid: Option<u32> },
    /// `m USER GROUP`.
    Member { user: String, group: String },
    /// `r - LOW-HIGH` (or a single id).
    Range(u32, u32),
}

/// The primary group a `u` line gives after its uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Id(u32),
    Name(String),
}

/// Reads `base-passwd`'s master files and every fragment of `installed`, records in
/// the provenance what cairn does in place of the scripts, and warns about lines it
/// cannot honour. `None` when no package has accounts.
pub fn configure(
    installed: &mut InstalledPackages,
) -> Result<Option<PackageAccounts>, DebianError> {
    let read = |content: &crate::snapshot::Content| {
        let path = content.path();
        std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|source| DebianError::Cache {
                path: path.into_owned(),
                source,
            })
    };
    let mut masters = None;
    let mut fragments = Vec::new();
    for p in &installed.packages {
        let file = |rel: &str| {
            p.tree.entries.iter().find_map(|e| match &e.kind {
                SourceEntryKind::File(c) if *e.rel_path == rel[1..] => Some(c),
                _ => None,
            })
        };
        if p.name == BASE_PASSWD {
            if let (Some(passwd), Some(group)) = (file(PASSWD_MASTER), file(GROUP_MASTER)) {
                masters = Some(Masters {
                    passwd: read(passwd)?,
                    passwd_sha256: passwd.sha256,
                    group: read(group)?,
                    group_sha256: group.sha256,
                });
            }
        }
        for e in &p.tree.entries {
            let SourceEntryKind::File(content) = &e.kind else {
                continue;
            };
            let Some(name) = FRAGMENT_DIRS
                .iter()
                .find_map(|d| e.rel_path.strip_prefix(d))
                .filter(|n| n.ends_with(".conf") && !n.contains('/'))
            else {
                continue;
            };
            let path = format!("/usr/lib/sysusers.d/{name}");
            let mut lines = Vec::new();
            for (n, text) in read(content)?.lines().enumerate() {
                let n = n as u32 + 1;
                match parse_line(text) {
                    Ok(Some(line)) => lines.push((n, line)),
                    Ok(None) => {}
                    Err(why) => installed.warnings.push(format!(
                        "package `{}`: {path} line {n}: {why}; cairn leaves the line out (`{}`)",
                        p.name,
                        text.trim()
                    )),
                }
            }
            fragments.push(Fragment {
                package: p.name.clone(),
                path,
                sha256: content.sha256,
                lines,
            });
        }
    }
    if masters.is_none() && fragments.is_empty() {
        return Ok(None);
    }
    // systemd-sysusers reads fragments in file-name order, whatever package ships them.
    fragments.sort_by(|a, b| a.path.cmp(&b.path));
    let by = match masters {
        Some(_) => BASE_PASSWD.to_string(),
        None => first_by_name(&fragments),
    };
    for p in &mut installed.packages {
        let done = describe(p, masters.is_some(), &fragments);
        if done.is_empty() {
            continue;
        }
        if let Some(script) = p.scripts.iter_mut().find(|s| s.name == "postinst") {
            script.done_natively.extend(done);
        }
    }
    Ok(Some(PackageAccounts {
        masters,
        fragments,
        by,
    }))
}

fn first_by_name(fragments: &[Fragment]) -> String {
    fragments
        .iter()
        .map(|f| f.package.as_str())
        .min()
        .expect("some fragment")
        .to_string()
}

/// What cairn does in place of `p`'s postinst, for the provenance.
fn describe(p: &InstalledPackage, masters: bool, fragments: &[Fragment]) -> Vec<String> {
    let mut done = Vec::new();
    if p.name == BASE_PASSWD && masters {
        done.push(format!(
            "/etc/passwd and /etc/group from {PASSWD_MASTER} and {GROUP_MASTER}, as a first install copies them (unless the base image has its own), with the users and groups of every sysusers.d fragment and of `accounts:` added"
        ));
    }
    for f in fragments.iter().filter(|f| f.package == p.name) {
        done.push(format!(
            "systemd-sysusers {}: its {} lines added to /etc/passwd and /etc/group (ids left `-` allocated as systemd-sysusers does)",
            f.path,
            f.lines.len()
        ));
    }
    done
}

/// Parses one sysusers.d line: `None` for a blank line or comment, an error (why
/// cairn cannot honour it) otherwise.
pub fn parse_line(text: &str) -> Result<Option<Line>, String> {
    let words = split_words(text)?;
    let Some(kind) = words.first() else {
        return Ok(None);
    };
    if kind.starts_with('#') {
        return Ok(None);
    }
    if words.iter().any(|w| w.contains('%')) {
        return Err("specifiers (`%`) are not expanded".into());
    }
    let field = |i: usize| words.get(i).filter(|w| *w != "-").cloned();
    let name = |i: usize, what: &str| {
        field(i)
            .filter(|n| valid_name(n))
            .ok_or_else(|| format!("no valid {what} name"))
    };
    let id = |text: &str| {
        text.parse::<u32>()
            .ok()
            .filter(|id| *id != u32::MAX && *id != 65535)
            .ok_or_else(|| format!("`{text}` is not a numeric id"))
    };
    if words.len() > 6 {
        return Err("more than 6 fields".into());
    }
    let id_field = field(2);
    if id_field.as_deref().is_some_and(|t| t.starts_with('/')) {
        return Err("an id taken from a file's owner is not supported".into());
    }
    match kind.as_str() {
        "u" => {
            let (uid, group) = match id_field.as_deref().map(|t| t.split_once(':')) {
                None => (None, None),
                Some(None) => (Some(id(id_field.as_deref().unwrap_or_default())?), None),
                Some(Some((uid, group))) => {
                    let uid = if uid == "-" { None } else { Some(id(uid)?) };
                    let group = match group.parse::<u32>() {
                        Ok(_) => GroupRef::Id(id(group)?),
                        Err(_) if valid_name(group) => GroupRef::Name(group.to_string()),
                        Err(_) => return Err(format!("`{group}` is not a group")),
                    };
                    (uid, Some(group))
                }
            };
            Ok(Some(Line::User {
                name: name(1, "user")?,
                uid,
                group,
                gecos: field(3),
                home: field(4),
                shell: field(5),
            }))
        }
        "g" => {
            if words.iter().skip(3).any(|w| w != "-") {
                return Err("a `g` line has no GECOS, home or shell".into());
            }
            Ok(Some(Line::Group {
                name: name(1, "group")?,
                gid: id_field.as_deref().map(id).transpose()?,
            }))
        }
        "m" => Ok(Some(Line::Member {
            user: name(1, "user")?,
            group: name(2, "group")?,
        })),
        "r" => {
            let range = id_field.ok_or("a range line without a range")?;
            let (low, high) = range.split_once('-').unwrap_or((&range, &range));
            let (low, high) = (id(low)?, id(high)?);
            if low > high {
                return Err(format!("range `{range}` is empty"));
            }
            Ok(Some(Line::Range(low, high)))
        }
        other => Err(format!(
            "line type `{other}` is not supported (only u, g, m, r)"
        )),
    }
}

/// A name `systemd-sysusers` accepts: like `useradd`'s, and never a passwd separator.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 31
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name.parse::<u32>().is_err()
}

/// Whitespace-separated words, `"…"` and `'…'` quoting and backslash escapes as
/// sysusers.d allows them.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while chars.peek().is_some() {
        let mut word = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => word.push(chars.next().ok_or("a trailing backslash")?),
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("an unterminated quote".into());
        }
        words.push(word);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    }
    Ok(words)
}

/// Two sources disagree about an account, or a line cannot be applied.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AccountConflict(pub String);

/// One line of `/etc/passwd` or `/etc/group` and where it came from (for errors).
#[derive(Debug, Clone)]
struct Entry {
    fields: Vec<String>,
    from: Arc<str>,
}

impl Entry {
    fn name(&self) -> &str {
        &self.fields[0]
    }

    fn id(&self) -> Option<u32> {
        self.fields.get(2)?.parse().ok()
    }
}

/// `/etc/passwd` and `/etc/group` as lines, each kept as written.
#[derive(Debug, Clone, Default)]
pub struct AccountDb {
    users: Vec<Entry>,
    groups: Vec<Entry>,
}

impl AccountDb {
    /// The files' texts as they start (the master files, or the base image's), `from`
    /// naming where they are from in errors.
    pub fn read(passwd: &str, group: &str, passwd_from: &str, group_from: &str) -> AccountDb {
        let entries = |text: &str, from: &str| {
            let from: Arc<str> = from.into();
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| Entry {
                    fields: l.split(':').map(str::to_string).collect(),
                    from: Arc::clone(&from),
                })
                .collect()
        };
        AccountDb {
            users: entries(passwd, passwd_from),
            groups: entries(group, group_from),
        }
    }

    /// A user of `accounts:` (`line` is its passwd line): replaces the entry of the
    /// same name, which must have the same uid.
    pub fn set_user(&mut self, line: &str, from: &str) -> Result<(), AccountConflict> {
        set(&mut self.users, "user", "uid", line, from)
    }

    /// A group of `accounts:`, as [`Self::set_user`].
    pub fn set_group(&mut self, line: &str, from: &str) -> Result<(), AccountConflict> {
        set(&mut self.groups, "group", "gid", line, from)
    }

    /// `/etc/passwd`, with a root line first when no user has uid 0.
    pub fn passwd(&self) -> String {
        render(&self.users, "root:x:0:0:root:/root:/sbin/nologin")
    }

    /// `/etc/group`, with a root line first when no group has gid 0.
    pub fn group(&self) -> String {
        render(&self.groups, "root:x:0:")
    }

    fn user(&self, name: &str) -> Option<&Entry> {
        self.users.iter().find(|e| e.name() == name)
    }

    fn group_entry(&self, name: &str) -> Option<&Entry> {
        self.groups.iter().find(|e| e.name() == name)
    }

    fn uid_used(&self, uid: u32) -> bool {
        self.users.iter().any(|e| e.id() == Some(uid))
    }

    fn gid_used(&self, gid: u32) -> bool {
        self.groups.iter().any(|e| e.id() == Some(gid))
    }

    /// Adds the users and groups of `fragments`, in the order and with the ids
    /// `systemd-sysusers` gives them (see the module doc).
    pub fn apply(&mut self, fragments: &[Fragment]) -> Result<(), AccountConflict> {
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        let mut groups: Vec<(&str, Option<u32>, String)> = Vec::new();
        let mut users: Vec<(&Line, String)> = Vec::new();
        let mut members: Vec<(&str, &str, String)> = Vec::new();
        for f in fragments {
            for (n, line) in &f.lines {
                let at = format!("package `{}`'s {} line {n}", f.package, f.path);
                match line {
                    Line::Range(low, high) => ranges.push((*low, *high)),
                    Line::Group { name, gid } => {
                        if !groups.iter().any(|(g, _, _)| g == name) {
                            groups.push((name, *gid, at));
                        }
                    }
                    Line::User { name, .. } => {
                        if !users.iter().any(|(u, _)| user_name(u) == name) {
                            users.push((line, at));
                        }
                    }
                    Line::Member { user, group } => members.push((user, group, at)),
                }
            }
        }
        if ranges.is_empty() {
            ranges.push(DEFAULT_RANGE);
        }
        // Groups and users that `m` lines name and nothing defines are made too, as the
        // tool walks its members: by group in the order first named, then by user.
        let mut by_group: Vec<(&str, Vec<(&str, &String)>)> = Vec::new();
        for (user, group, at) in &members {
            match by_group.iter_mut().find(|(g, _)| g == group) {
                Some((_, users)) => users.push((user, at)),
                None => by_group.push((group, vec![(user, at)])),
            }
        }
        let mut implicit_users: Vec<(String, String)> = Vec::new();
        for (group, group_users) in &by_group {
            if !groups.iter().any(|(g, _, _)| g == group) {
                groups.push((group, None, group_users[0].1.clone()));
            }
            for (user, at) in group_users {
                if !users.iter().any(|(u, _)| user_name(u) == *user)
                    && !implicit_users.iter().any(|(u, _)| u == user)
                {
                    implicit_users.push((user.to_string(), (*at).clone()));
                }
            }
        }
        let implicit: Vec<Line> = implicit_users
            .iter()
            .map(|(name, _)| Line::User {
                name: name.clone(),
                uid: None,
                group: None,
                gecos: None,
                home: None,
                shell: None,
            })
            .collect();
        let mut alloc = Allocator {
            ranges,
            cursor: None,
        };
        for (name, gid, at) in &groups {
            self.add_group(name, *gid, None, at, &mut alloc)?;
        }
        let all_users = users.iter().map(|(l, at)| (*l, at.as_str())).chain(
            implicit
                .iter()
                .zip(&implicit_users)
                .map(|(l, (_, at))| (l, at.as_str())),
        );
        for (line, at) in all_users {
            self.add_user(line, at, &mut alloc)?;
        }
        for (user, group, at) in &members {
            let entry = self
                .groups
                .iter_mut()
                .find(|e| e.name() == *group)
                .ok_or_else(|| AccountConflict(format!("{at}: group `{group}` was not made")))?;
            while entry.fields.len() < 4 {
                entry.fields.push(String::new());
            }
            let list = &mut entry.fields[3];
            if !list.split(',').any(|m| m == *user) {
                if !list.is_empty() {
                    list.push(',');
                }
                list.push_str(user);
            }
        }
        Ok(())
    }

    /// A group: kept if it exists (with the same gid, if `gid` is given); else made
    /// with `gid`, else `uid` (a user's own group), else an allocated id.
    fn add_group(
        &mut self,
        name: &str,
        gid: Option<u32>,
        uid: Option<u32>,
        at: &str,
        alloc: &mut Allocator,
    ) -> Result<u32, AccountConflict> {
        if let Some(existing) = self.group_entry(name) {
            let id = existing.id().unwrap_or_default();
            match gid {
                Some(gid) if gid != id => {
                    return Err(AccountConflict(format!(
                        "group `{name}` has gid {id} in {} and gid {gid} in {at}",
                        existing.from
                    )))
                }
                _ => return Ok(id),
            }
        }
        let gid = match (gid, uid) {
            (Some(gid), _) => {
                if let Some(holder) = self.groups.iter().find(|e| e.id() == Some(gid)) {
                    return Err(AccountConflict(format!(
                        "{at} gives group `{name}` gid {gid}, which group `{}` has in {}",
                        holder.name(),
                        holder.from
                    )));
                }
                gid
            }
            (None, Some(uid)) if !self.gid_used(uid) && !self.uid_used_by_other(uid, name) => uid,
            (None, _) => alloc.next(|id| !self.gid_used(id) && !self.uid_used(id), name, at)?,
        };
        self.groups.push(Entry {
            fields: vec![name.into(), "x".into(), gid.to_string(), String::new()],
            from: at.into(),
        });
        Ok(gid)
    }

    fn uid_used_by_other(&self, uid: u32, name: &str) -> bool {
        self.users
            .iter()
            .any(|e| e.id() == Some(uid) && e.name() != name)
    }

    fn add_user(
        &mut self,
        line: &Line,
        at: &str,
        alloc: &mut Allocator,
    ) -> Result<(), AccountConflict> {
        let Line::User {
            name,
            uid,
            group,
            gecos,
            home,
            shell,
        } = line
        else {
            unreachable!("users are `u` lines")
        };
        // The user's group first, as the tool makes it (even for a user that exists).
        let gid = match group {
            None => self.add_group(name, None, *uid, at, alloc)?,
            Some(GroupRef::Id(gid)) if self.gid_used(*gid) => *gid,
            Some(GroupRef::Name(group)) if self.group_entry(group).is_some() => {
                self.group_entry(group).and_then(Entry::id).unwrap_or_default()
            }
            Some(GroupRef::Id(gid)) => {
                return Err(AccountConflict(format!(
                    "{at} gives user `{name}` gid {gid}, which no group has"
                )))
            }
            Some(GroupRef::Name(group)) => {
                return Err(AccountConflict(format!(
                    "{at} gives user `{name}` group `{group}`, which no master file, fragment or `accounts:` defines"
                )))
            }
        };
        if let Some(existing) = self.user(name) {
            let id = existing.id().unwrap_or_default();
            return match uid {
                Some(uid) if *uid != id => Err(AccountConflict(format!(
                    "user `{name}` has uid {id} in {} and uid {uid} in {at}",
                    existing.from
                ))),
                _ => Ok(()),
            };
        }
        let uid = match uid {
            Some(uid) => {
                if let Some(holder) = self.users.iter().find(|e| e.id() == Some(*uid)) {
                    return Err(AccountConflict(format!(
                        "{at} gives user `{name}` uid {uid}, which user `{}` has in {}",
                        holder.name(),
                        holder.from
                    )));
                }
                *uid
            }
            None if !self.uid_used(gid) && !self.gid_used_by_other(gid, name) => gid,
            None => alloc.next(
                |id| !self.uid_used(id) && !self.gid_used_by_other(id, name),
                name,
                at,
            )?,
        };
        let default_shell = if uid == 0 { "/bin/sh" } else { NOLOGIN };
        self.users.push(Entry {
            fields: vec![
                name.clone(),
                "x".into(),
                uid.to_string(),
                gid.to_string(),
                gecos.clone().unwrap_or_default(),
                home.clone().unwrap_or_else(|| "/".into()),
                shell.clone().unwrap_or_else(|| default_shell.into()),
            ],
            from: at.into(),
        });
        Ok(())
    }

    fn gid_used_by_other(&self, gid: u32, name: &str) -> bool {
        self.groups
            .iter()
            .any(|e| e.id() == Some(gid) && e.name() != name)
    }
}

fn user_name(line: &Line) -> &str {
    match line {
        Line::User { name, .. } => name,
        _ => unreachable!("users are `u` lines"),
    }
}

fn set(
    entries: &mut Vec<Entry>,
    what: &str,
    id: &str,
    line: &str,
    from: &str,
) -> Result<(), AccountConflict> {
    let new = Entry {
        fields: line.split(':').map(str::to_string).collect(),
        from: from.into(),
    };
    if let Some(i) = entries.iter().position(|e| e.name() == new.name()) {
        let old = &entries[i];
        if old.id() != new.id() {
            return Err(AccountConflict(format!(
                "{what} `{}` has {id} {} in {} and {id} {} in {from}",
                new.name(),
                old.fields.get(2).map_or("", String::as_str),
                old.from,
                new.fields[2]
            )));
        }
        entries.remove(i);
    }
    entries.push(new);
    Ok(())
}

fn render(entries: &[Entry], root_line: &str) -> String {
    let mut out = String::new();
    if !entries.iter().any(|e| e.id() == Some(0)) {
        out.push_str(root_line);
        out.push('\n');
    }
    for e in entries {
        out.push_str(&e.fields.join(":"));
        out.push('\n');
    }
    out
}

/// `systemd-sysusers`' search for a free id: one cursor for users and groups, moving
/// down through the ranges from the highest.
struct Allocator {
    ranges: Vec<(u32, u32)>,
    /// The last id handed out or skipped.
    cursor: Option<u32>,
}

impl Allocator {
    fn next(
        &mut self,
        free: impl Fn(u32) -> bool,
        name: &str,
        at: &str,
    ) -> Result<u32, AccountConflict> {
        loop {
            let below = self.cursor.unwrap_or(u32::MAX);
            let next = self
                .ranges
                .iter()
                .filter(|(low, _)| *low < below)
                .map(|(_, high)| (*high).min(below.saturating_sub(1)))
                .max();
            let Some(id) = next else {
                return Err(AccountConflict(format!(
                    "{at}: no free id left for `{name}` in the ranges {:?}",
                    self.ranges
                )));
            };
            self.cursor = Some(id);
            if free(id) {
                return Ok(id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
