//! The host tools a disk build runs (`mksquashfs` for a squashfs root; ext4 is
//! written natively and needs none): found, asked for their version, and pinned in
//! the lock file like sources, because their version may change output bytes. A `--locked` build refuses a tool whose version
//! differs from the lock; a normal build pins a new tool and refuses a changed one
//! until `cairn lock` re-pins it.
//!
//! Tools are looked for in the system directories of [`SEARCH_PATH`] only, never on
//! the caller's `PATH` (no wrapper script can stand in for a pinned tool), and run with
//! an empty environment (plus the few variables cairn sets), so the caller's locale,
//! time zone or configuration files cannot reach the output.

use crate::diag::Diagnose;
use crate::recipe::RootFsType;
use crate::resolve::{LockMode, Lockfile};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where tools are looked for, in order.
pub const SEARCH_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// A tool found on this host.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: &'static str,
    pub path: PathBuf,
    /// The first line the tool prints about its own version.
    pub version: String,
}

impl Tool {
    /// A command for this tool with an empty environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.path);
        c.env_clear().env("LC_ALL", "C").env("TZ", "UTC0");
        c
    }
}

/// The tools a disk build runs.
#[derive(Debug, Clone)]
pub struct Tools(pub Vec<Tool>);

impl Tools {
    /// Name -> version, as recorded in the lock and the provenance.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|t| (t.name.to_string(), t.version.clone()))
            .collect()
    }

    /// A tool [`find`] found for this build's file system.
    pub fn get(&self, name: &str) -> &Tool {
        self.0
            .iter()
            .find(|t| t.name == name)
            .expect("the tools of the root file system type were found when planning")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{name}` is not installed (looked in {})", SEARCH_PATH.join(", "))]
    Missing {
        name: &'static str,
        package: &'static str,
    },
    #[error("`{name}` ({path}) did not say its version: {detail}")]
    NoVersion {
        name: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{lock} pins {name} `{locked}`, but this host has `{found}`")]
    Changed {
        lock: PathBuf,
        name: String,
        locked: String,
        found: String,
    },
    #[error("{lock} does not pin the version of {name} (`{found}` here)")]
    Unpinned {
        lock: PathBuf,
        name: String,
        found: String,
    },
}

/// Every tool error has a hint: it is placed at the recipe's `vm:`.
impl Diagnose for ToolError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            ToolError::Missing { package, .. } => {
                format!("install it, e.g. `apt-get install {package}`").into()
            }
            ToolError::NoVersion { .. } => "check that the tool runs on this host".into(),
            ToolError::Changed { .. } => "the tool's version may change the disk's bytes: build with the pinned version, or run `cairn lock` to re-pin it and commit the lock file".into(),
            ToolError::Unpinned { .. } => "--locked builds use only pinned tools; run `cairn lock` and commit the lock file".into(),
        })
    }
}

/// The path of tool `name` in [`SEARCH_PATH`], if it is there.
pub fn locate(name: &str) -> Option<PathBuf> {
    SEARCH_PATH
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// Finds the tools that write `fs` and asks each for its version.
pub fn find(fs: RootFsType) -> Result<Tools, ToolError> {
    Ok(Tools(match fs {
        RootFsType::Ext4 => Vec::new(),
        RootFsType::Squashfs => vec![probe("mksquashfs", "squashfs-tools", &["-version"])?],
    }))
}

fn probe(
    name: &'static str,
    package: &'static str,
    version_args: &[&str],
) -> Result<Tool, ToolError> {
    for path in SEARCH_PATH.iter().map(|dir| Path::new(dir).join(name)) {
        let mut tool = Tool {
            name,
            path,
            version: String::new(),
        };
        let output = match tool.command().args(version_args).output() {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ToolError::NoVersion {
                    name,
                    path: tool.path,
                    detail: e.to_string(),
                })
            }
        };
        // Some tools print their version on stderr (e2fsprogs), others on stdout.
        let text = [output.stdout, output.stderr].concat();
        let text = String::from_utf8_lossy(&text);
        let Some(line) = text.lines().find(|l| l.starts_with(name)) else {
            return Err(ToolError::NoVersion {
                name,
                path: tool.path,
                detail: text.trim().chars().take(200).collect(),
            });
        };
        tool.version = line.trim().to_string();
        return Ok(tool);
    }
    Err(ToolError::Missing { name, package })
}

/// Records the tools' versions in `lock` (the lock as it will be written), checking
/// them against `old` (the lock as read) according to `mode`.
pub fn pin(
    tools: &Tools,
    old: &Lockfile,
    lock: &mut Lockfile,
    lock_path: &Path,
    mode: LockMode,
) -> Result<Vec<String>, ToolError> {
    let mut warnings = Vec::new();
    for (name, found) in tools.versions() {
        match (old.tools.get(&name), mode) {
            (Some(locked), LockMode::Locked | LockMode::PinMissing) if *locked != found => {
                return Err(ToolError::Changed {
                    lock: lock_path.into(),
                    name,
                    locked: locked.clone(),
                    found,
                });
            }
            (None, LockMode::Locked) => {
                return Err(ToolError::Unpinned {
                    lock: lock_path.into(),
                    name,
                    found,
                });
            }
            (None, LockMode::PinMissing) => warnings.push(format!(
                "tool {name} was not pinned; pinned `{found}` in {}",
                lock_path.display()
            )),
            _ => {}
        }
        lock.tools.insert(name, found);
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_package() {
        let err = probe("cairn-no-such-tool", "cairn-pkg", &["-V"]).unwrap_err();
        assert!(matches!(err, ToolError::Missing { .. }));
        assert!(err
            .to_string()
            .contains("`cairn-no-such-tool` is not installed"));
        assert_eq!(
            err.hint().as_deref(),
            Some("install it, e.g. `apt-get install cairn-pkg`")
        );
    }

    #[test]
    fn versions_are_pinned_and_changes_refused() {
        let tool = |name, version: &str| Tool {
            name,
            path: PathBuf::new(),
            version: version.into(),
        };
        let tools = Tools(vec![
            tool("mke2fs", "mke2fs 1.47.0"),
            tool("debugfs", "debugfs 1.47.0"),
        ]);
        let path = Path::new("r.lock");
        let empty = Lockfile::default();
        let mut lock = Lockfile::default();
        let warnings = pin(&tools, &empty, &mut lock, path, LockMode::PinMissing).unwrap();
        assert_eq!(warnings.len(), 2);
        assert_eq!(lock.tools["mke2fs"], "mke2fs 1.47.0");
        assert!(matches!(
            pin(
                &tools,
                &empty,
                &mut Lockfile::default(),
                path,
                LockMode::Locked
            ),
            Err(ToolError::Unpinned { .. })
        ));
        let mut old = lock.clone();
        old.tools.insert("debugfs".into(), "debugfs 1.46.5".into());
        for mode in [LockMode::Locked, LockMode::PinMissing] {
            assert!(matches!(
                pin(&tools, &old, &mut Lockfile::default(), path, mode),
                Err(ToolError::Changed { .. })
            ));
        }
        let mut repinned = Lockfile::default();
        pin(&tools, &old, &mut repinned, path, LockMode::Repin).unwrap();
        assert_eq!(repinned.tools, lock.tools);
    }
}
