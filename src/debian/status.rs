//! The packages a base image has installed, read from its dpkg status: the one file
//! `/var/lib/dpkg/status` of Debian images, and the per-package files of
//! `/var/lib/dpkg/status.d/` that distroless images (and cairn's own) carry. The
//! solver builds on them ([`super::solver`]).
//!
//! The files come from an untrusted image: the caller bounds their size
//! (`base::fs::kept_limit`), and every name and version is checked as an index's is.
//! In `status`, only stanzas whose `Status` is `install ok installed` (or `hold ok
//! installed`) count; a `status.d` file is a package's control stanza, which counts
//! unless it carries a `Status` saying otherwise (distroless writes none). Only
//! packages of the image's architecture or `all` count. A package listed twice
//! counts at its highest version.

use super::index::{parse_provides, parse_relations, Dependency};
use super::version::Version;
use super::DebianError;
use crate::recipe::valid_package_name;
use std::collections::BTreeMap;

/// One dpkg status file of the base image.
pub struct StatusFile<'a> {
    /// Its absolute path in the image, for errors.
    pub path: String,
    pub text: &'a [u8],
    /// A `status.d` file, whose stanza needs no `Status` field.
    pub per_package: bool,
}

/// A package the base image has installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasePackage {
    pub name: String,
    pub version: Version,
    pub provides: Vec<(String, Option<Version>)>,
    /// Its `Conflicts` and `Breaks`, which packages installed on top must honour.
    pub conflicts: Vec<Dependency>,
}

/// The base image's installed packages, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasePackages {
    pub by_name: BTreeMap<String, BasePackage>,
}

/// Reads `files` for a `arch` image.
pub fn read(files: &[StatusFile<'_>], arch: &str) -> Result<BasePackages, DebianError> {
    let mut by_name: BTreeMap<String, BasePackage> = BTreeMap::new();
    for file in files {
        for package in read_file(file, arch)? {
            match by_name.get(&package.name) {
                Some(known) if known.version >= package.version => {}
                _ => {
                    by_name.insert(package.name.clone(), package);
                }
            }
        }
    }
    Ok(BasePackages { by_name })
}

fn read_file(file: &StatusFile<'_>, arch: &str) -> Result<Vec<BasePackage>, DebianError> {
    let bad = |detail: String| DebianError::BadBaseStatus {
        file: file.path.clone(),
        detail,
    };
    let text = std::str::from_utf8(file.text)
        .map_err(|e| bad(format!("it is not UTF-8 (at byte {})", e.valid_up_to())))?;
    let mut out = Vec::new();
    for p in deb822_fast::borrowed::iter_paragraphs_borrowed(text) {
        let p = p.map_err(|e| bad(e.to_string()))?;
        let get = |name: &str| p.get(name).map(|lines| lines.join(" "));
        let installed = match get("Status") {
            Some(status) => {
                let words: Vec<&str> = status.split_whitespace().collect();
                matches!(words[..], ["install" | "hold", "ok", "installed"])
            }
            None => file.per_package,
        };
        let architecture = get("Architecture").unwrap_or_default();
        if !installed || (architecture != arch && architecture != "all") {
            continue;
        }
        let name = get("Package").ok_or_else(|| bad("a stanza has no `Package` field".into()))?;
        if !valid_package_name(&name) {
            return Err(bad(format!("invalid package name `{name}`")));
        }
        let version_text = get("Version")
            .ok_or_else(|| bad(format!("package `{name}` has no `Version` field")))?;
        let version = Version::parse(&version_text).ok_or_else(|| {
            bad(format!(
                "package `{name}` has an invalid version `{version_text}`"
            ))
        })?;
        let provides = match get("Provides") {
            Some(value) => parse_provides(&value)
                .ok_or_else(|| bad(format!("package `{name}`: cannot read Provides `{value}`")))?,
            None => Vec::new(),
        };
        let mut conflicts = Vec::new();
        for field in ["Conflicts", "Breaks"] {
            if let Some(value) = get(field) {
                let relations = parse_relations(&value).ok_or_else(|| {
                    bad(format!("package `{name}`: cannot read {field} `{value}`"))
                })?;
                conflicts.extend(relations.into_iter().flatten());
            }
        }
        out.push(BasePackage {
            name,
            version,
            provides,
            conflicts,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(text: &str) -> StatusFile<'_> {
        StatusFile {
            path: "/var/lib/dpkg/status".into(),
            text: text.as_bytes(),
            per_package: false,
        }
    }

    fn per_package<'a>(name: &str, text: &'a str) -> StatusFile<'a> {
        StatusFile {
            path: format!("/var/lib/dpkg/status.d/{name}"),
            text: text.as_bytes(),
            per_package: true,
        }
    }

    fn versions(packages: &BasePackages) -> Vec<String> {
        packages
            .by_name
            .values()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    }

    #[test]
    fn the_status_file_counts_only_installed_packages_of_the_architecture() {
        let text = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u9\nArchitecture: amd64\nDepends: libgcc-s1\n\n\
                    Package: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: amd64\n\n\
                    Package: half\nStatus: install reinstreq half-installed\nVersion: 1\nArchitecture: amd64\n\n\
                    Package: held\nStatus: hold ok installed\nVersion: 2\nArchitecture: all\n\n\
                    Package: foreign\nStatus: install ok installed\nVersion: 1\nArchitecture: i386\n\n\
                    Package: mawk\nStatus: install ok installed\nVersion: 1.3.4\nArchitecture: amd64\nProvides: awk\n";
        let read = read(&[status(text)], "amd64").unwrap();
        assert_eq!(
            versions(&read),
            ["held=2", "libc6=2.36-9+deb12u9", "mawk=1.3.4"]
        );
        assert_eq!(read.by_name["mawk"].provides, [("awk".to_string(), None)]);
    }

    #[test]
    fn status_d_files_count_without_a_status_and_the_highest_version_wins() {
        let files = [
            status("Package: libssl3\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\n"),
            // As distroless writes them: the control stanza alone.
            per_package(
                "libssl3",
                "Package: libssl3\nVersion: 3.0.15-1~deb12u1\nArchitecture: amd64\nProvides: libssl (= 3.0.15)\n",
            ),
            // As cairn writes them, with a status.
            per_package(
                "tzdata",
                "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\nStatus: install ok installed\n",
            ),
            per_package(
                "removed",
                "Package: removed\nVersion: 1\nArchitecture: all\nStatus: deinstall ok config-files\n",
            ),
        ];
        let read = read(&files, "amd64").unwrap();
        assert_eq!(
            versions(&read),
            ["libssl3=3.0.15-1~deb12u1", "tzdata=2024a-0+deb12u1"]
        );
        assert_eq!(
            read.by_name["libssl3"].provides[0]
                .1
                .as_ref()
                .unwrap()
                .as_str(),
            "3.0.15"
        );
    }

    #[test]
    fn a_bad_stanza_is_an_error_naming_the_file_and_the_package() {
        let err = |file: StatusFile<'_>| read(&[file], "amd64").unwrap_err().to_string();
        let e = err(per_package(
            "x",
            "Package: ../../etc/passwd\nVersion: 1\nArchitecture: all\n",
        ));
        assert!(
            e.contains("/var/lib/dpkg/status.d/x") && e.contains("invalid package name"),
            "{e}"
        );
        let e = err(status(
            "Package: aa\nStatus: install ok installed\nVersion: 1:\nArchitecture: all\n",
        ));
        assert!(
            e.contains("package `aa` has an invalid version `1:`"),
            "{e}"
        );
        let e = err(status(
            "Status: install ok installed\nVersion: 1\nArchitecture: all\n",
        ));
        assert!(e.contains("no `Package` field"), "{e}");
        let e = err(StatusFile {
            path: "/var/lib/dpkg/status".into(),
            text: b"Package: a\xff\n",
            per_package: false,
        });
        assert!(e.contains("not UTF-8"), "{e}");
        let e = err(per_package(
            "bb",
            "Package: bb\nVersion: 1\nArchitecture: all\nBreaks: c (<<\n",
        ));
        assert!(
            e.contains("package `bb`: cannot read Breaks `c (<<`"),
            "{e}"
        );
    }

    #[test]
    fn conflicts_and_breaks_are_read_for_packages_installed_on_top() {
        let files = [per_package(
            "exim",
            "Package: exim\nVersion: 4\nArchitecture: amd64\nConflicts: mail-transport-agent\nBreaks: sa-exim (<< 4.2.1-15)\n",
        )];
        let base = read(&files, "amd64").unwrap();
        let relations: Vec<String> = base.by_name["exim"]
            .conflicts
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(relations, ["mail-transport-agent", "sa-exim (<< 4.2.1-15)"]);
    }
}
