//! `update-alternatives --install` done natively: the calls a package's `postinst`
//! makes are read from the script (never run), and the links are made as dpkg's auto
//! mode leaves them: for each alternative name, the choice with the highest priority
//! (the first package by name among equals) whose path the image has.
//!
//! For a choice of name `awk`, link `/usr/bin/awk` and path `/usr/bin/mawk`:
//! `/usr/bin/awk -> /etc/alternatives/awk -> /usr/bin/mawk`, the same for each slave
//! whose path the image has, and `/var/lib/dpkg/alternatives/awk`, the administrative
//! file `update-alternatives` reads, so that it works in a machine built from the image.
//! A link that a package ships as a file of its own is left alone, as
//! `update-alternatives` leaves it.
//!
//! Only literal calls are read: a call whose words hold a shell expansion (`$`, a
//! backquote) is not, and is reported so.

/// One `update-alternatives --install LINK NAME PATH PRIORITY [--slave LINK NAME PATH]...`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Install {
    pub link: String,
    pub name: String,
    pub path: String,
    pub priority: i64,
    pub slaves: Vec<Slave>,
}

impl Install {
    /// The call, as the provenance names what cairn did in its place.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "update-alternatives --install {} {} {} {}",
            self.link, self.name, self.path, self.priority
        );
        for s in &self.slaves {
            out.push_str(&format!(" --slave {} {} {}", s.link, s.name, s.path));
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Slave {
    pub link: String,
    pub name: String,
    pub path: String,
}

/// The `--install` calls of `script`, and the calls it could not read (as written).
pub fn installs_in(script: &str) -> (Vec<Install>, Vec<String>) {
    let joined = script.replace("\\\n", " ");
    let (mut installs, mut unread) = (Vec::new(), Vec::new());
    for line in joined.lines() {
        let Some(at) = line.find("update-alternatives") else {
            continue;
        };
        let call = &line[at..];
        if !call.contains("--install") {
            continue;
        }
        match parse_install(call) {
            Some(install) => installs.push(install),
            None => unread.push(call.trim().to_string()),
        }
    }
    (installs, unread)
}

/// `update-alternatives [options] --install L N P PRIO [--slave L N P]...`, up to the
/// end of the command (`;`, `&&`, `||`, `|` or the end of the line).
fn parse_install(call: &str) -> Option<Install> {
    let command = call
        .split([';', '|', '&'])
        .next()
        .unwrap_or(call)
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
        .collect::<Vec<_>>();
    if command.iter().any(|w| w.contains(['$', '`'])) {
        return None;
    }
    let at = command.iter().position(|w| *w == "--install")?;
    let [link, name, path, priority] = command.get(at + 1..at + 5)? else {
        return None;
    };
    let mut install = Install {
        link: (*link).to_string(),
        name: (*name).to_string(),
        path: (*path).to_string(),
        priority: priority.parse().ok()?,
        slaves: Vec::new(),
    };
    let mut rest = &command[at + 5..];
    while let [flag, link, name, path, tail @ ..] = rest {
        if *flag != "--slave" {
            break;
        }
        install.slaves.push(Slave {
            link: (*link).to_string(),
            name: (*name).to_string(),
            path: (*path).to_string(),
        });
        rest = tail;
    }
    let absolute = |p: &str| p.starts_with('/') && !p.split('/').any(|c| c == "..");
    let names_ok = |n: &str| !n.is_empty() && !n.contains('/') && n != "." && n != "..";
    let sound = absolute(&install.link)
        && absolute(&install.path)
        && names_ok(&install.name)
        && install
            .slaves
            .iter()
            .all(|s| absolute(&s.link) && absolute(&s.path) && names_ok(&s.name));
    sound.then_some(install)
}

/// A file to put in the image for the alternatives: a symlink (`target`) or the
/// administrative file (`content`), by absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    Symlink { path: String, target: String },
    File { path: String, content: String },
}

/// What dpkg's auto mode leaves for `installs` (each with the package that made the
/// call, in package name order): per alternative name, the links of the highest
/// priority choice whose path `exists`, unless `shipped` (a package's own file) is at
/// the link. Returns, per package whose choice won, what to make.
pub fn auto_links(
    installs: &[(String, Install)],
    exists: impl Fn(&str) -> bool,
    shipped: impl Fn(&str) -> bool,
) -> Vec<(String, Made)> {
    let mut names: Vec<&str> = installs.iter().map(|(_, i)| i.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let choices: Vec<&(String, Install)> = installs
            .iter()
            .filter(|(_, i)| i.name == name && exists(&i.path))
            .collect();
        // `max_by_key` keeps the last of equals: reverse, so the first by package wins.
        let Some((package, best)) = choices.iter().rev().max_by_key(|(_, i)| i.priority) else {
            continue;
        };
        let mut link = |link: &str, name: &str, path: &str| {
            if shipped(link) {
                return;
            }
            out.push((
                package.clone(),
                Made::Symlink {
                    path: format!("/etc/alternatives/{name}"),
                    target: path.to_string(),
                },
            ));
            out.push((
                package.clone(),
                Made::Symlink {
                    path: link.to_string(),
                    target: format!("/etc/alternatives/{name}"),
                },
            ));
        };
        link(&best.link, &best.name, &best.path);
        for slave in best.slaves.iter().filter(|s| exists(&s.path)) {
            link(&slave.link, &slave.name, &slave.path);
        }
        out.push((
            package.clone(),
            Made::File {
                path: format!("/var/lib/dpkg/alternatives/{name}"),
                content: admin_file(best, &choices),
            },
        ));
    }
    out
}

/// `/var/lib/dpkg/alternatives/<name>` as `update-alternatives` writes it: the mode,
/// the master link, each slave's name and link, a blank line, then per choice its
/// path, priority and each slave's path (empty if it has none), and a closing blank
/// line. The slaves are those of the chosen one.
fn admin_file(best: &Install, choices: &[&(String, Install)]) -> String {
    let mut out = format!("auto\n{}\n", best.link);
    for slave in &best.slaves {
        out.push_str(&format!("{}\n{}\n", slave.name, slave.link));
    }
    out.push('\n');
    for (_, choice) in choices {
        out.push_str(&format!("{}\n{}\n", choice.path, choice.priority));
        for slave in &best.slaves {
            let path = choice
                .slaves
                .iter()
                .find(|s| s.name == slave.name)
                .map_or("", |s| s.path.as_str());
            out.push_str(path);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAWK: &str = "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n  update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\\n    --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz \\\n    --slave /usr/bin/nawk nawk /usr/bin/mawk\nfi\nupdate-alternatives --install /usr/bin/x x \"$dir/x\" 10\n";

    #[test]
    fn literal_install_calls_are_read_with_their_slaves_and_expansions_are_not() {
        let (installs, unread) = installs_in(MAWK);
        assert_eq!(installs.len(), 1);
        let awk = &installs[0];
        assert_eq!(
            (
                awk.link.as_str(),
                awk.name.as_str(),
                awk.path.as_str(),
                awk.priority
            ),
            ("/usr/bin/awk", "awk", "/usr/bin/mawk", 5)
        );
        let slaves: Vec<_> = awk.slaves.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(slaves, ["awk.1.gz", "nawk"]);
        assert_eq!(
            unread,
            ["update-alternatives --install /usr/bin/x x \"$dir/x\" 10"]
        );
        let (none, bad) = installs_in("update-alternatives --install ../x x /y 1\n");
        assert!(none.is_empty() && bad.len() == 1);
    }

    #[test]
    fn auto_mode_takes_the_highest_priority_whose_path_exists() {
        let (mawk, _) = installs_in(MAWK);
        let (gawk, _) =
            installs_in("update-alternatives --install /usr/bin/awk awk /usr/bin/gawk 10\n");
        let installs = vec![
            ("gawk".to_string(), gawk[0].clone()),
            ("mawk".to_string(), mawk[0].clone()),
        ];
        let made = auto_links(
            &installs,
            |p| p != "/usr/share/man/man1/mawk.1.gz",
            |_| false,
        );
        assert!(made.iter().all(|(p, _)| p == "gawk"));
        assert!(made.contains(&(
            "gawk".into(),
            Made::Symlink {
                path: "/usr/bin/awk".into(),
                target: "/etc/alternatives/awk".into()
            }
        )));
        assert!(made.contains(&(
            "gawk".into(),
            Made::Symlink {
                path: "/etc/alternatives/awk".into(),
                target: "/usr/bin/gawk".into()
            }
        )));
        // Without gawk's binary, mawk's choice wins, with the slave whose path exists.
        let made = auto_links(
            &installs,
            |p| p != "/usr/bin/gawk" && p != "/usr/share/man/man1/mawk.1.gz",
            |_| false,
        );
        let paths: Vec<_> = made
            .iter()
            .map(|(_, m)| match m {
                Made::Symlink { path, .. } | Made::File { path, .. } => path.as_str(),
            })
            .collect();
        assert_eq!(
            paths,
            [
                "/etc/alternatives/awk",
                "/usr/bin/awk",
                "/etc/alternatives/nawk",
                "/usr/bin/nawk",
                "/var/lib/dpkg/alternatives/awk"
            ]
        );
        let Made::File { content, .. } = &made[4].1 else {
            panic!("{made:?}")
        };
        assert_eq!(
            content,
            "auto\n/usr/bin/awk\nawk.1.gz\n/usr/share/man/man1/awk.1.gz\nnawk\n/usr/bin/nawk\n\n/usr/bin/mawk\n5\n/usr/share/man/man1/mawk.1.gz\n/usr/bin/mawk\n\n"
        );
        // A file a package ships at the link is left alone.
        let made = auto_links(&installs, |_| true, |p| p == "/usr/bin/awk");
        assert!(!made
            .iter()
            .any(|(_, m)| matches!(m, Made::Symlink { path, .. } if path == "/usr/bin/awk")));
    }
}
