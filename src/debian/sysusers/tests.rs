//! Unit tests of the sysusers.d parser and of the accounts it adds, checked against
//! what the real `systemd-sysusers` wrote for the same files.

use super::*;

const PASSWD_MASTER_TEXT: &str = "root:*:0:0:root:/root:/bin/bash
daemon:*:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:*:33:33:www-data:/var/www:/usr/sbin/nologin
nobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";
const GROUP_MASTER_TEXT: &str = "root:*:0:
daemon:*:1:
audio:*:29:
www-data:*:33:
users:*:100:
nogroup:*:65534:
";

fn fragment(package: &str, name: &str, text: &str) -> Fragment {
    Fragment {
        package: package.into(),
        path: format!("/usr/lib/sysusers.d/{name}"),
        sha256: Sha256Digest::of(text.as_bytes()),
        lines: text
            .lines()
            .enumerate()
            .filter_map(|(n, l)| parse_line(l).unwrap().map(|line| (n as u32 + 1, line)))
            .collect(),
    }
}

fn masters() -> AccountDb {
    AccountDb::read(
        PASSWD_MASTER_TEXT,
        GROUP_MASTER_TEXT,
        "base-passwd's passwd.master",
        "base-passwd's group.master",
    )
}

#[test]
fn lines_parse_as_sysusers_reads_them() {
    assert_eq!(parse_line("  # comment").unwrap(), None);
    assert_eq!(parse_line("").unwrap(), None);
    assert_eq!(
        parse_line(r#"u app - "App user" /var/lib/app"#).unwrap(),
        Some(Line::User {
            name: "app".into(),
            uid: None,
            group: None,
            gecos: Some("App user".into()),
            home: Some("/var/lib/app".into()),
            shell: None,
        })
    );
    assert_eq!(
        parse_line("u nobody 65534:65534 - /nonexistent").unwrap(),
        Some(Line::User {
            name: "nobody".into(),
            uid: Some(65534),
            group: Some(GroupRef::Id(65534)),
            gecos: None,
            home: Some("/nonexistent".into()),
            shell: None,
        })
    );
    assert!(matches!(
        parse_line("u z -:users").unwrap(),
        Some(Line::User { uid: None, group: Some(GroupRef::Name(g)), .. }) if g == "users"
    ));
    assert_eq!(
        parse_line("g adm 4 -").unwrap(),
        Some(Line::Group {
            name: "adm".into(),
            gid: Some(4)
        })
    );
    assert_eq!(
        parse_line("m app audio").unwrap(),
        Some(Line::Member {
            user: "app".into(),
            group: "audio".into()
        })
    );
    assert_eq!(
        parse_line("r - 500-900").unwrap(),
        Some(Line::Range(500, 900))
    );
    // What cairn cannot honour says why.
    for (line, why) in [
        ("u app /usr/bin/app", "file's owner"),
        ("u %u -", "specifiers"),
        ("u! app -", "`u!` is not supported"),
        ("u app abc", "not a numeric id"),
        ("u app 65535", "not a numeric id"),
        ("r - 900-500", "empty"),
        (r#"u app - "unterminated"#, "unterminated quote"),
        ("u 123 -", "no valid user name"),
    ] {
        let err = parse_line(line).unwrap_err();
        assert!(err.contains(why), "{line}: {err}");
    }
}

/// What `systemd-sysusers --root` (systemd 252, bookworm) wrote for these fragments on
/// base-passwd's master files: ids allocated from one cursor moving down (here in the
/// `r` range), groups before users, a user's group taking the user's number, `m`
/// appending to members, and fragments read in file-name order.
#[test]
fn ids_are_allocated_as_systemd_sysusers_does() {
    let mut db = masters();
    let fragments = [
        fragment("zeta", "a-first.conf", "u first -\n"),
        fragment(
            "app",
            "b-app.conf",
            "# comment\ng appgrp -\nu app - \"App user\" /var/lib/app\nu fixed 4242 \"Fixed\" /srv /bin/sh\nm app audio\ng explicit 777\nu withgrp -:explicit\nr - 500-900\nu ranged -\nm newuser newgroup\n",
        ),
    ];
    db.apply(&fragments).unwrap();
    assert_eq!(
        db.passwd(),
        PASSWD_MASTER_TEXT.to_string()
            + "first:x:898:898::/:/usr/sbin/nologin
app:x:897:897:App user:/var/lib/app:/usr/sbin/nologin
fixed:x:4242:4242:Fixed:/srv:/bin/sh
withgrp:x:896:777::/:/usr/sbin/nologin
ranged:x:895:895::/:/usr/sbin/nologin
newuser:x:894:894::/:/usr/sbin/nologin
"
    );
    assert_eq!(
        db.group(),
        GROUP_MASTER_TEXT.replace("audio:*:29:", "audio:*:29:app")
            + "appgrp:x:900:
explicit:x:777:
newgroup:x:899:newuser
first:x:898:
app:x:897:
fixed:x:4242:
ranged:x:895:
newuser:x:894:
"
    );
    // Without `r` lines the cursor starts at 999; a user that exists keeps its entry
    // but gets the group of its name if it has none (as the tool does); an id a
    // group holds is skipped for a user's own group.
    let mut db = masters();
    db.apply(&[fragment(
        "p",
        "p.conf",
        "u a -\nu daemon -\nu z 4301:users\n",
    )])
    .unwrap();
    assert!(db.passwd().ends_with(
        "nobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\na:x:999:999::/:/usr/sbin/nologin\nz:x:4301:100::/:/usr/sbin/nologin\n"
    ));
    assert!(db.group().ends_with("nogroup:*:65534:\na:x:999:\n"));
    // Users `m` lines name are made by group, in the order the groups were first named;
    // on empty files a root entry comes first, as for `accounts:`.
    let mut db = AccountDb::default();
    db.apply(&[fragment("m", "m.conf", "m a g1\nm b g2\nm c g1\n")])
        .unwrap();
    assert_eq!(
        db.passwd(),
        "root:x:0:0:root:/root:/sbin/nologin\na:x:997:997::/:/usr/sbin/nologin\nc:x:996:996::/:/usr/sbin/nologin\nb:x:995:995::/:/usr/sbin/nologin\n"
    );
    assert_eq!(
        db.group(),
        "root:x:0:\ng1:x:999:a,c\ng2:x:998:b\na:x:997:\nc:x:996:\nb:x:995:\n"
    );
}

#[test]
fn the_same_name_with_another_id_is_an_error_naming_both_sources() {
    let mut db = masters();
    let err = db
        .apply(&[fragment("web", "web.conf", "\nu www-data 77\n")])
        .unwrap_err();
    assert_eq!(
        err.0,
        "user `www-data` has uid 33 in base-passwd's passwd.master and uid 77 in package `web`'s /usr/lib/sysusers.d/web.conf line 2"
    );
    let err = masters()
        .apply(&[fragment("a", "a.conf", "g audio 30\n")])
        .unwrap_err();
    assert!(
        err.0
            .contains("group `audio` has gid 29 in base-passwd's group.master and gid 30"),
        "{}",
        err.0
    );
    // An id given that another name holds.
    let err = masters()
        .apply(&[fragment("w", "w.conf", "u web 33\n")])
        .unwrap_err();
    assert!(
        err.0.contains(
            "gives user `web` uid 33, which user `www-data` has in base-passwd's passwd.master"
        ),
        "{}",
        err.0
    );
    // The recipe against a master file.
    let err = masters()
        .set_user("www-data:x:34:34::/:/sbin/nologin", "`accounts.users`")
        .unwrap_err();
    assert_eq!(
        err.0,
        "user `www-data` has uid 33 in base-passwd's passwd.master and uid 34 in `accounts.users`"
    );
    // A group nobody defines.
    let err = masters()
        .apply(&[fragment("g", "g.conf", "u x -:nosuch\n")])
        .unwrap_err();
    assert!(
        err.0.contains("group `nosuch`, which no master file"),
        "{}",
        err.0
    );
}

#[test]
fn a_recipe_user_is_kept_and_its_ids_are_not_allocated_again() {
    let mut db = AccountDb::default();
    db.set_group("app:x:999:", "`accounts.groups`").unwrap();
    db.set_user("app:x:999:999::/home/app:/bin/sh", "`accounts.users`")
        .unwrap();
    db.apply(&[fragment("p", "p.conf", "u app -\nu svc -\n")])
        .unwrap();
    assert_eq!(
        db.passwd(),
        "root:x:0:0:root:/root:/sbin/nologin\napp:x:999:999::/home/app:/bin/sh\nsvc:x:998:998::/:/usr/sbin/nologin\n"
    );
    assert_eq!(db.group(), "root:x:0:\napp:x:999:\nsvc:x:998:\n");
}
