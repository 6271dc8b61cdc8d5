//! dpkg's own database for the installed packages (`dpkg_database: full`), as `dpkg
//! --install` leaves it, so that `dpkg -l`, `dpkg -S`, `dpkg --verify`, `dpkg --audit`
//! and apt work in the image:
//!
//! - `/var/lib/dpkg/info/<name>.list` (`<name>:<arch>` for `Multi-Arch: same`): `/.`,
//!   then every path of the package that is in the image, in archive order (sorted, as
//!   `dpkg-deb` writes it). dpkg itself also lists the paths `--path-exclude` skipped,
//!   and its `--verify` then reports each as `missing`; cairn lists only what it
//!   installed, so `--verify` is clean.
//! - `<name>.md5sums`: the package's own, as dpkg keeps it; a package without one gets
//!   the MD5 of each regular file installed, as dpkg computes it when unpacking.
//! - every other control member but `control` (`conffiles`, `preinst`, `postinst`,
//!   `prerm`, `postrm`, `config`, `templates`, `triggers`, `shlibs`, `symbols`, ...),
//!   scripts with mode 0755 and the rest 0644, as dpkg keeps them.
//! - the package's stanza of `/var/lib/dpkg/status`: its control fields in the order
//!   dpkg writes them (known fields in dpkg's order, then the others as the package has
//!   them), relationship fields in dpkg's spacing, `Status: install ok installed`, and
//!   `Conffiles:` with the MD5 of each conffile as installed.
//!
//! [`status_file`] joins the stanzas, sorted by name as dpkg sorts them.

use super::DebianError;
use crate::snapshot::{SourceEntry, SourceEntryKind, SourceTree};
use md5::{Digest, Md5};
use std::fmt::Write as _;

/// What one package adds to dpkg's database.
#[derive(Debug, Clone)]
pub struct PackageDatabase {
    /// Files of `/var/lib/dpkg/info`: file name, bytes, mode.
    pub info: Vec<(String, Vec<u8>, u32)>,
    /// Its stanza of `/var/lib/dpkg/status`, ending in one newline.
    pub stanza: String,
}

/// A member of a package's control tarball, as dpkg keeps it in its `info` directory.
#[derive(Debug, Clone)]
pub struct ControlMember {
    pub name: String,
    pub bytes: Vec<u8>,
    /// Whether the member is executable (a maintainer script).
    pub executable: bool,
}

/// Where dpkg's database lives.
pub const ADMIN_DIR: &str = "var/lib/dpkg";

/// Fields dpkg knows, in the order it writes them (dpkg's `lib/dpkg/parse.c`); the
/// others follow in the package's order.
const FIELD_ORDER: [&str; 33] = [
    "Package",
    "Essential",
    "Protected",
    "Status",
    "Priority",
    "Section",
    "Installed-Size",
    "Origin",
    "Maintainer",
    "Bugs",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Revision",
    "Config-Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
    "Conffiles",
    "Filename",
    "Size",
    "MD5sum",
    "MSDOS-Filename",
    "Description",
    "Triggers-Pending",
    "Triggers-Awaited",
];

/// Fields holding package relationships, which dpkg writes in its own spacing.
const RELATION_FIELDS: [&str; 9] = [
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
];

/// The database entries of the package `name` with control file `control` and control
/// members `members`, whose installed files are `tree` (what `path_filters:` kept).
pub fn package_database(
    name: &str,
    control: &str,
    members: &[ControlMember],
    tree: &SourceTree,
) -> Result<PackageDatabase, DebianError> {
    let fields = fields(control);
    let field = |f: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(f))
            .map(|(_, v)| v.trim())
    };
    let info_name = match (field("Multi-Arch"), field("Architecture")) {
        (Some("same"), Some(arch)) => format!("{name}:{arch}"),
        _ => name.to_string(),
    };
    // The MD5 of an entry that is a regular file.
    let md5_of = |entry: &SourceEntry| -> Result<Option<String>, DebianError> {
        let SourceEntryKind::File(content) = &entry.kind else {
            return Ok(None);
        };
        let bytes = std::fs::read(content.path()).map_err(|source| DebianError::Cache {
            path: content.path().into_owned(),
            source,
        })?;
        Ok(Some(format!("{:x}", Md5::digest(&bytes))))
    };
    let mut list = String::from("/.\n");
    for e in &tree.entries {
        list.push('/');
        list.push_str(&e.rel_path);
        list.push('\n');
    }
    let mut info = vec![(format!("{info_name}.list"), list.into_bytes(), 0o644)];
    if !members.iter().any(|m| m.name == "md5sums") {
        let mut md5sums = String::new();
        for e in &tree.entries {
            if let Some(md5) = md5_of(e)? {
                let _ = writeln!(md5sums, "{md5}  {}", e.rel_path);
            }
        }
        if !md5sums.is_empty() {
            info.push((format!("{info_name}.md5sums"), md5sums.into_bytes(), 0o644));
        }
    }
    for m in members {
        let mode = if m.executable { 0o755 } else { 0o644 };
        info.push((format!("{info_name}.{}", m.name), m.bytes.clone(), mode));
    }
    info.sort();
    // Each conffile with the MD5 of its bytes as installed; one `path_filters:` left
    // out is not installed, so not listed.
    let mut conffiles = String::new();
    let listed = members
        .iter()
        .find(|m| m.name == "conffiles")
        .map(|m| String::from_utf8_lossy(&m.bytes).into_owned())
        .unwrap_or_default();
    for path in listed.lines().map(str::trim) {
        // `remove-on-upgrade /etc/x` names a conffile the package no longer ships.
        let Some(rel_path) = path.strip_prefix('/') else {
            continue;
        };
        // The tree is sorted by path.
        let entry = tree
            .entries
            .binary_search_by(|e| (*e.rel_path).cmp(rel_path))
            .ok()
            .map(|i| &tree.entries[i]);
        if let Some(md5) = entry.map(md5_of).transpose()?.flatten() {
            let _ = write!(conffiles, "\n {path} {md5}");
        }
    }
    let mut stanza = String::new();
    // A value that starts on the next line (`Conffiles:`) has no space after the colon.
    let mut write_field = |name: &str, value: &str| {
        let space = if value.starts_with('\n') { "" } else { " " };
        let _ = writeln!(stanza, "{name}:{space}{value}");
    };
    for known in FIELD_ORDER {
        match known {
            "Status" => write_field(known, "install ok installed"),
            "Conffiles" if !conffiles.is_empty() => write_field(known, &conffiles),
            _ => {
                let Some((_, value)) = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(known))
                else {
                    continue;
                };
                let value = value.trim_start();
                // dpkg writes these flags only when set.
                if matches!(known, "Essential" | "Protected") && value.trim() != "yes" {
                    continue;
                }
                if RELATION_FIELDS.contains(&known) {
                    write_field(known, &relations(value));
                } else {
                    write_field(known, value.trim_end_matches('\n'));
                }
            }
        }
    }
    for (name, value) in &fields {
        let known = FIELD_ORDER.iter().any(|k| k.eq_ignore_ascii_case(name));
        if !known {
            write_field(name, value.trim_start().trim_end_matches('\n'));
        }
    }
    Ok(PackageDatabase { info, stanza })
}

/// `/var/lib/dpkg/status` from the packages' stanzas (each [`PackageDatabase::stanza`]),
/// sorted by package name as dpkg writes it, each followed by a blank line.
pub fn status_file<'a>(stanzas: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = stanzas.into_iter().collect();
    sorted.sort();
    let mut out = String::new();
    for (_, stanza) in sorted {
        out.push_str(stanza);
        out.push('\n');
    }
    out
}

/// The fields of a control file: name and value (continuation lines included, with
/// their newlines), in order.
fn fields(control: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for line in control.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push('\n');
                value.push_str(line);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim(), value.to_string()));
        }
    }
    out
}

/// A relationship field in dpkg's spacing: `a (>= 1), b | c:any`.
fn relations(value: &str) -> String {
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    value
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|group| {
            group
                .split('|')
                .map(|alternative| relation(alternative.trim()))
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One relation: `name (op version)` with one space each side of the operator.
fn relation(text: &str) -> String {
    let Some((name, rest)) = text.split_once('(') else {
        return text.to_string();
    };
    let inner = rest.trim_end().trim_end_matches(')').trim();
    let split = inner
        .find(|c: char| !matches!(c, '<' | '>' | '='))
        .unwrap_or(inner.len());
    let (op, version) = inner.split_at(split);
    format!("{} ({op} {})", name.trim(), version.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_take_dpkgs_spacing() {
        assert_eq!(
            relations(" libc6 (>=2.3),foo|bar ,\n baz:any( << 1:2 )"),
            "libc6 (>= 2.3), foo | bar, baz:any (<< 1:2)"
        );
    }

    /// The same stanza `dpkg --set-selections` rewrote from a scrambled one (dpkg 1.21).
    #[test]
    fn a_stanza_has_dpkgs_field_order() {
        let control = "Package: zed\nVersion: 1.0\nArchitecture: all\nMaintainer: x <x@y>\nHomepage: http://h\nDepends: libc6 (>=2.3),foo|bar\nBuilt-Using: a (= 1)\nEssential: yes\nProtected: yes\nDescription: d\n long\n .\n more\n";
        let db = package_database("zed", control, &[], &SourceTree::default()).unwrap();
        assert_eq!(
            db.stanza,
            "Package: zed\nEssential: yes\nProtected: yes\nStatus: install ok installed\nMaintainer: x <x@y>\nArchitecture: all\nVersion: 1.0\nDepends: libc6 (>= 2.3), foo | bar\nDescription: d\n long\n .\n more\nHomepage: http://h\nBuilt-Using: a (= 1)\n"
        );
        assert_eq!(
            db.info,
            vec![("zed.list".to_string(), b"/.\n".to_vec(), 0o644)]
        );
        assert_eq!(
            status_file([("zed", "Package: zed\n"), ("abc", "Package: abc\n")]),
            "Package: abc\n\nPackage: zed\n\n"
        );
    }

    /// A package without md5sums gets the MD5 of each regular file (what `md5sum`
    /// prints), and `Conffiles:` the MD5 of each conffile installed; one left out by
    /// `path_filters:` is not listed.
    #[test]
    fn md5sums_and_conffiles_hash_the_installed_bytes() {
        use crate::snapshot::{Content, Location};
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        std::fs::write(&conf, "setting = 1\n").unwrap();
        let entry = |rel_path: &str, kind| SourceEntry {
            rel_path: rel_path.into(),
            kind,
            mode: 0o644,
            owner: None,
        };
        let tree = SourceTree {
            entries: vec![
                entry("etc", SourceEntryKind::Dir),
                entry(
                    "etc/x.conf",
                    SourceEntryKind::File(Content {
                        location: Location::Path(std::sync::Arc::new(conf)),
                        size: 12,
                        sha256: crate::digest::Sha256Digest::of(b"setting = 1\n"),
                    }),
                ),
            ],
        };
        let members = [ControlMember {
            name: "conffiles".into(),
            bytes: b"/etc/x.conf\n/etc/left-out.conf\nremove-on-upgrade /etc/old.conf\n".to_vec(),
            executable: false,
        }];
        let control = "Package: x\nVersion: 1\nArchitecture: amd64\nDescription: x\n";
        let db = package_database("x", control, &members, &tree).unwrap();
        // `printf 'setting = 1\n' | md5sum`
        let md5 = "6bc5aa55a24a9d663f97616fed018e1a";
        let file = |name: &str| {
            let (_, bytes, _) = db.info.iter().find(|(n, _, _)| n == name).unwrap();
            String::from_utf8(bytes.clone()).unwrap()
        };
        assert_eq!(file("x.md5sums"), format!("{md5}  etc/x.conf\n"));
        assert_eq!(file("x.list"), "/.\n/etc\n/etc/x.conf\n");
        assert!(
            db.stanza
                .contains(&format!("Conffiles:\n /etc/x.conf {md5}\nDescription: x\n")),
            "{}",
            db.stanza
        );
    }

    #[test]
    fn multi_arch_same_packages_name_their_files_with_the_architecture() {
        let control = "Package: libx\nArchitecture: amd64\nMulti-Arch: same\nVersion: 1\nEssential: no\nDescription: x\n";
        let members = [ControlMember {
            name: "postinst".into(),
            bytes: b"#!/bin/sh\n".to_vec(),
            executable: true,
        }];
        let db = package_database("libx", control, &members, &SourceTree::default()).unwrap();
        let names: Vec<(&str, u32)> = db.info.iter().map(|(n, _, m)| (n.as_str(), *m)).collect();
        assert_eq!(
            names,
            [("libx:amd64.list", 0o644), ("libx:amd64.postinst", 0o755)]
        );
        assert!(!db.stanza.contains("Essential"), "{}", db.stanza);
    }
}
