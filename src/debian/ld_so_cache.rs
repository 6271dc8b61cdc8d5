//! `ldconfig` done natively: `/etc/ld.so.cache` as `libc-bin`'s `ldconfig` trigger
//! writes it (the script is never run), in the new format only
//! (`glibc-ld.so.cache1.1`, what bookworm's `ldconfig` writes by default), from the
//! image's file tree:
//!
//! - the directories: those `/etc/ld.so.conf` names, with its `include` globs (sorted
//!   byte-wise) read in place, then the built-in ones, `/lib/<multiarch>`,
//!   `/usr/lib/<multiarch>`, `/lib` and `/usr/lib`; a directory that resolves (through
//!   symlinks, as `ldconfig -r` resolves them) to one already listed is skipped, so
//!   with merged `/usr` the cache names `/lib/<multiarch>/...`, as `ldconfig` does;
//! - in each, every file or symlink named as a shared object (`lib*.so*`, `ld-*.so*`,
//!   `ld.so.*`, `ld64.so.*`) that is an ELF shared object of the image's class and
//!   machine with a dynamic section: its `DT_SONAME` (else its name) is the entry,
//!   `<dir>/<soname>`; a symlink that is its soname, or the `.so` link for `ld`, is an
//!   entry of its own name;
//! - entries sorted as `ldconfig` sorts them (`_dl_cache_libcmp`, descending, then
//!   flags, then directory order), strings in one table with shared tails (glibc's
//!   `stringtable.c`), and the generator extension naming the `libc-bin` version.
//!
//! Only amd64 and arm64 are made (their flags: `libc6,x86-64`, `libc6,AArch64`);
//! `glibc-hwcaps` subdirectories are not read (a build warning names a package that
//! ships them).

use super::{DebianError, InstalledPackages};
use crate::digest::Sha256Digest;
use crate::elf::{Elf, ET_DYN};
use crate::snapshot::Content;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// The file made, and the configuration read.
pub const CACHE: &str = "/etc/ld.so.cache";
pub const CONF: &str = "/etc/ld.so.conf";
/// The package whose trigger this stands in for, and the one that brings the loader.
pub const LIBC_BIN: &str = "libc-bin";
pub const LIBC6: &str = "libc6";

/// `FLAG_ELF_LIBC6` with the class flag of the architecture (`sysdeps/generic/ldconfig.h`).
const FLAG_ELF_LIBC6: i32 = 0x0003;
const FLAG_X8664_LIB64: i32 = 0x0300;
const FLAG_AARCH64_LIB64: i32 = 0x0a00;
/// `cache_file_new_flags_endian_little`.
const FLAGS_ENDIAN_LITTLE: u8 = 2;
const MAGIC_NEW: &[u8; 20] = b"glibc-ld.so.cache1.1";
const EXTENSION_MAGIC: u32 = 0xeaa4_2174;
const HEADER_SIZE: usize = 48;
const ENTRY_SIZE: usize = 24;
/// How many symlinks one path may pass through (as the kernel's `ELOOP` limit).
const MAX_LINKS: usize = 40;

/// What the image's architecture makes a library's entry say, and where its libraries are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    flags: i32,
    machine: u16,
    multiarch: &'static str,
}

impl Target {
    fn of(architecture: &str) -> Option<Target> {
        match architecture {
            "amd64" => Some(Target {
                flags: FLAG_ELF_LIBC6 | FLAG_X8664_LIB64,
                machine: 62,
                multiarch: "x86_64-linux-gnu",
            }),
            "arm64" => Some(Target {
                flags: FLAG_ELF_LIBC6 | FLAG_AARCH64_LIB64,
                machine: 183,
                multiarch: "aarch64-linux-gnu",
            }),
            _ => None,
        }
    }
}

/// What is known before the layers are made: the cache is made for this architecture,
/// named as made by this `ldconfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdSoCache {
    /// The package whose script it stands in for (`libc-bin`, else `libc6`).
    pub package: String,
    /// The Debian architecture.
    pub architecture: String,
    /// The generator extension's text: `ldconfig (Debian GLIBC <version>) stable
    /// release version <upstream>`, as glibc's `PKGVERSION RELEASE VERSION`.
    pub generator: String,
}

/// A file's bytes: a source's file (at `rel_path` in its source) or bytes cairn made.
#[derive(Debug, Clone)]
pub enum FileBytes {
    Content {
        content: Content,
        rel_path: Arc<str>,
    },
    Inline(Arc<[u8]>),
}

impl FileBytes {
    fn read(&self) -> Result<Vec<u8>, DebianError> {
        match self {
            FileBytes::Content { content, rel_path } => {
                let path = content.path_in(rel_path);
                std::fs::read(&path).map_err(|source| DebianError::Cache {
                    path: path.into_owned(),
                    source,
                })
            }
            FileBytes::Inline(bytes) => Ok(bytes.to_vec()),
        }
    }

    fn sha256(&self) -> Sha256Digest {
        match self {
            FileBytes::Content { content, .. } => content.sha256,
            FileBytes::Inline(bytes) => Sha256Digest::of(bytes),
        }
    }
}

/// An entry of the image's tree, by absolute path.
#[derive(Debug, Clone)]
pub enum Node {
    Dir,
    File(FileBytes),
    Symlink(String),
}

/// The image's file tree, as `ldconfig -r` sees it.
#[derive(Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// Adds (or replaces) the entry at `path` (absolute or relative to `/`).
    pub fn insert(&mut self, path: &str, node: Node) {
        self.nodes
            .insert(format!("/{}", path.trim_start_matches('/')), node);
    }

    /// What is at `path` itself (a symlink is not followed); a directory that only
    /// holds entries is a directory.
    fn lstat(&self, path: &str) -> Option<&Node> {
        if path == "/" {
            return Some(&Node::Dir);
        }
        if let Some(node) = self.nodes.get(path) {
            return Some(node);
        }
        let prefix = format!("{path}/");
        self.nodes
            .range(prefix.clone()..)
            .next()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|_| &Node::Dir)
    }

    /// `path` with every symlink resolved inside the tree, as `chroot_canon` does;
    /// `None` if a component is missing or the links loop.
    fn resolve(&self, path: &str) -> Option<String> {
        let mut rest: VecDeque<String> = path.split('/').map(str::to_string).collect();
        let mut current = String::new();
        let mut links = 0;
        while let Some(part) = rest.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    let cut = current.rfind('/').unwrap_or(0);
                    current.truncate(cut);
                    continue;
                }
                _ => {}
            }
            let next = format!("{current}/{part}");
            match self.lstat(&next)? {
                Node::Symlink(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    if target.starts_with('/') {
                        current.clear();
                    }
                    for p in target.split('/').rev() {
                        rest.push_front(p.to_string());
                    }
                }
                _ => current = next,
            }
        }
        Some(if current.is_empty() {
            "/".into()
        } else {
            current
        })
    }

    /// The names in directory `dir` (resolved), sorted.
    fn list(&self, dir: &str) -> BTreeSet<String> {
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| k[prefix.len()..].split('/').next().map(str::to_string))
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// The regular file `path` resolves to, with its resolved path.
    fn file(&self, path: &str) -> Option<(String, &FileBytes)> {
        let real = self.resolve(path)?;
        match self.nodes.get(&real)? {
            Node::File(bytes) => Some((real, bytes)),
            _ => None,
        }
    }
}

/// The cache, and the files it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    pub bytes: Vec<u8>,
    /// The configuration files read, then the libraries, in the order read: absolute
    /// path (where the bytes are, symlinks resolved) and SHA-256.
    pub inputs: Vec<(String, Sha256Digest)>,
}

/// Marks the cache to be made when `libc-bin` (or `libc6`) is installed, and says so
/// in the provenance of the script it stands in for: `libc-bin`'s `ldconfig` trigger
/// (its `triggers` and `postinst`), or `libc6`'s `postinst` without `libc-bin`. None
/// for an architecture cairn makes no cache for (a warning says so).
pub fn configure(installed: &mut InstalledPackages) -> Option<LdSoCache> {
    let owner = [LIBC_BIN, LIBC6]
        .into_iter()
        .find(|name| installed.packages.iter().any(|p| p.name == *name))?;
    let architecture = installed.lock.architecture.clone();
    if Target::of(&architecture).is_none() {
        installed.warnings.push(format!(
            "{CACHE} is not made for architecture `{architecture}`: cairn knows the ldconfig flags of amd64 and arm64 only"
        ));
        return None;
    }
    let package = installed
        .packages
        .iter_mut()
        .find(|p| p.name == owner)
        .expect("found above");
    let generator = format!(
        "ldconfig (Debian GLIBC {}) stable release version {}",
        package.pin.version,
        upstream_version(&package.pin.version)
    );
    for script in &mut package.scripts {
        if matches!(script.name.as_str(), "postinst" | "triggers") {
            script.done_natively.push(format!(
                "the ldconfig trigger: {CACHE} is made once, from the shared libraries of every package (as `ldconfig -X`)"
            ));
        }
    }
    if let Some(p) = installed.packages.iter().find(|p| {
        p.tree
            .entries
            .iter()
            .any(|e| e.rel_path.contains("/glibc-hwcaps/"))
    }) {
        installed.warnings.push(format!(
            "package `{}` ships glibc-hwcaps libraries, which cairn leaves out of {CACHE} (ldconfig would list them)",
            p.name
        ));
    }
    Some(LdSoCache {
        package: owner.to_string(),
        architecture,
        generator,
    })
}

/// `2.36-9+deb12u14` -> `2.36`: no epoch, no Debian revision.
fn upstream_version(version: &str) -> &str {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    v.rsplit_once('-').map_or(v, |(u, _)| u)
}

/// One cache entry before sorting.
struct Entry {
    soname: String,
    path: String,
    flags: i32,
}

/// `/etc/ld.so.cache` for `tree`, as `ldconfig -X` writes it.
pub fn generate(tree: &Tree, config: &LdSoCache) -> Result<Cache, DebianError> {
    let target = Target::of(&config.architecture).expect("configure checked the architecture");
    let mut inputs: Vec<(String, Sha256Digest)> = Vec::new();
    let mut dirs = Dirs::default();
    parse_conf(tree, CONF, &mut dirs, &mut inputs)?;
    for dir in [
        format!("/lib/{}", target.multiarch),
        format!("/usr/lib/{}", target.multiarch),
        "/lib".to_string(),
        "/usr/lib".to_string(),
    ] {
        dirs.add(tree, &dir);
    }
    let mut entries = Vec::new();
    for (path, real) in &dirs.list {
        // soname (or link name) -> (is a link, file name), as ldconfig's dlibs.
        let mut dlibs: BTreeMap<String, (bool, String)> = BTreeMap::new();
        for name in tree.list(real) {
            if !is_dso(&name) || name.ends_with(".#prelink#") || name.contains(".#prelink#.") {
                continue;
            }
            let full = format!("{real}/{name}");
            let mut is_link = match tree.lstat(&full) {
                Some(Node::File(_)) => false,
                Some(Node::Symlink(_)) => true,
                _ => continue,
            };
            let Some((file_path, bytes)) = tree.file(&full) else {
                continue;
            };
            let data = bytes.read()?;
            let Some(soname) = shared_object_soname(&data, target.machine) else {
                continue;
            };
            if !inputs.iter().any(|(p, _)| *p == file_path) {
                inputs.push((file_path, bytes.sha256()));
            }
            let soname = soname.unwrap_or_else(|| name.clone());
            if is_link && name != soname && !(name.ends_with(".so") && soname.starts_with(&name)) {
                is_link = false;
            }
            let key = if is_link { name.clone() } else { soname };
            match dlibs.get_mut(&key) {
                Some(existing) => {
                    if (!is_link && existing.0)
                        || (is_link == existing.0 && libcmp(&existing.1, &name) == Ordering::Less)
                    {
                        *existing = (is_link, name);
                    }
                }
                None => {
                    dlibs.insert(key, (is_link, name));
                }
            }
        }
        for soname in dlibs.into_keys() {
            entries.push(Entry {
                path: format!("{path}/{soname}"),
                soname,
                flags: target.flags,
            });
        }
    }
    // Descending by soname, then by flags; stable, so directory order breaks ties.
    entries.sort_by(|a, b| libcmp(&b.soname, &a.soname).then(b.flags.cmp(&a.flags)));
    Ok(Cache {
        bytes: write(&entries, &config.generator),
        inputs,
    })
}

/// The directories to search, in order: as written, and resolved.
#[derive(Default)]
struct Dirs {
    list: Vec<(String, String)>,
}

impl Dirs {
    /// `add_dir_1`: trailing whitespace and slashes trimmed; a path that does not
    /// resolve, or resolves to a directory already listed, is skipped.
    fn add(&mut self, tree: &Tree, line: &str) {
        let path = line
            .trim_end_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b')
            .trim_end_matches('/');
        if path.is_empty() {
            return;
        }
        let Some(real) = tree.resolve(path) else {
            return;
        };
        if !self.list.iter().any(|(_, r)| *r == real) {
            self.list.push((path.to_string(), real));
        }
    }
}

/// `parse_conf`: each line up to a `#`, leading blanks skipped; `include` globs read
/// in sorted order; `hwcap` lines ignored; anything else a directory.
fn parse_conf(
    tree: &Tree,
    file: &str,
    dirs: &mut Dirs,
    inputs: &mut Vec<(String, Sha256Digest)>,
) -> Result<(), DebianError> {
    let Some((real, bytes)) = tree.file(file) else {
        return Ok(());
    };
    // A file read again adds no directory (each is listed once): an include loop,
    // on which ldconfig itself would recurse forever, ends here.
    if inputs.iter().any(|(p, _)| *p == real) {
        return Ok(());
    }
    let text = bytes.read()?;
    inputs.push((real, bytes.sha256()));
    for line in text.split(|b| *b == b'\n') {
        let line = line.split(|b| *b == b'#').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let line = line.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("include")
            .filter(|r| r.starts_with([' ', '\t']))
        {
            for pattern in rest[1..].split([' ', '\t']).filter(|p| !p.is_empty()) {
                let pattern = if pattern.starts_with('/') {
                    pattern.to_string()
                } else {
                    let parent = file.rsplit_once('/').map_or("", |(d, _)| d);
                    format!("{parent}/{pattern}")
                };
                for matched in glob(tree, &pattern) {
                    parse_conf(tree, &matched, dirs, inputs)?;
                }
            }
        } else if line
            .as_bytes()
            .get(..6)
            .is_some_and(|b| b[..5].eq_ignore_ascii_case(b"hwcap") && matches!(b[5], b' ' | b'\t'))
        {
            continue;
        } else {
            dirs.add(tree, line);
        }
    }
    Ok(())
}

/// The paths of `tree` matching `pattern` (`*` and `?` within one component, never a
/// leading `.`), sorted byte-wise as glob(3) in the C locale sorts them.
fn glob(tree: &Tree, pattern: &str) -> Vec<String> {
    let mut found = vec![String::new()];
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for prefix in &found {
            if !part.contains(['*', '?']) {
                let path = format!("{prefix}/{part}");
                if tree.resolve(&path).is_some() {
                    next.push(path);
                }
                continue;
            }
            let Some(real) = tree.resolve(if prefix.is_empty() { "/" } else { prefix }) else {
                continue;
            };
            for name in tree.list(&real) {
                if !name.starts_with('.') && wildcard(part.as_bytes(), name.as_bytes()) {
                    next.push(format!("{prefix}/{name}"));
                }
            }
        }
        found = next;
    }
    found.sort();
    found
}

/// `*` (any run) and `?` (one byte) matching: on a mismatch the last `*` takes one
/// byte more, so no pattern takes exponential time.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// `_dl_is_dso`: `lib*.so*`, `ld-*.so*`, `ld.so.*`, `ld64.so.*`.
fn is_dso(name: &str) -> bool {
    ((name.starts_with("lib") || name.starts_with("ld-")) && name.contains(".so"))
        || name.starts_with("ld.so.")
        || name.starts_with("ld64.so.")
}

/// `_dl_cache_libcmp`: runs of digits compare as numbers, a digit sorts after any
/// other character, other characters as C's (signed) `char`.
pub fn libcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let at = |s: &[u8], k: usize| s.get(k).copied().unwrap_or(0);
    while at(a, i) != 0 {
        let (x, y) = (at(a, i), at(b, j));
        if x.is_ascii_digit() {
            if !y.is_ascii_digit() {
                return Ordering::Greater;
            }
            let number = |s: &[u8], k: &mut usize| {
                let mut v: u64 = 0;
                while at(s, *k).is_ascii_digit() {
                    v = v.wrapping_mul(10).wrapping_add(u64::from(at(s, *k) - b'0'));
                    *k += 1;
                }
                v
            };
            let (v, w) = (number(a, &mut i), number(b, &mut j));
            if v != w {
                return v.cmp(&w);
            }
        } else if y.is_ascii_digit() {
            return Ordering::Less;
        } else if x != y {
            return (x as i8).cmp(&(y as i8));
        } else {
            i += 1;
            j += 1;
        }
    }
    0i8.cmp(&(at(b, j) as i8))
}

/// `Some(soname)` if `data` is a 64-bit little-endian ELF shared object (`ET_DYN`)
/// for `machine` with a dynamic section (`None` inside: it has no `DT_SONAME`);
/// `None` for anything else, which `ldconfig` leaves out.
fn shared_object_soname(data: &[u8], machine: u16) -> Option<Option<String>> {
    let elf = Elf::parse(data).filter(|e| e.file_type == ET_DYN && e.machine == machine)?;
    Some(elf.dynamic()?.soname.map(str::to_string))
}

/// The cache file: header, entries, the string table (tails shared), then at a
/// 4-byte boundary the extension directory with the generator string.
fn write(entries: &[Entry], generator: &str) -> Vec<u8> {
    let strings: BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| [e.soname.as_str(), e.path.as_str()])
        .collect();
    // stringtable_finalize: reversed strings in descending order, so that a string
    // that ends another follows it and shares its tail.
    let mut order: Vec<&str> = strings.into_iter().collect();
    order.sort_by(|a, b| b.bytes().rev().cmp(a.bytes().rev()));
    let mut offsets: BTreeMap<&str, usize> = BTreeMap::new();
    let mut previous: Option<(&str, usize)> = None;
    for s in &order {
        let offset = match previous {
            Some((p, o)) if p.ends_with(s) => o + p.len() - s.len(),
            Some((p, o)) => o + p.len() + 1,
            None => 0,
        };
        offsets.insert(s, offset);
        previous = Some((s, offset));
    }
    let table_size = previous.map_or(0, |(p, o)| o + p.len() + 1);
    let mut table = vec![0u8; table_size];
    for (s, o) in &offsets {
        table[*o..*o + s.len()].copy_from_slice(s.as_bytes());
    }
    let str_offset = HEADER_SIZE + ENTRY_SIZE * entries.len();
    let extension_offset = (str_offset + table_size).next_multiple_of(4);
    let le32 = |v: usize| u32::try_from(v).expect("a cache under 4 GiB").to_le_bytes();
    let mut out = Vec::with_capacity(extension_offset + 24 + generator.len());
    out.extend_from_slice(MAGIC_NEW);
    out.extend_from_slice(&le32(entries.len()));
    out.extend_from_slice(&le32(table_size));
    out.extend_from_slice(&[FLAGS_ENDIAN_LITTLE, 0, 0, 0]);
    out.extend_from_slice(&le32(extension_offset));
    out.extend_from_slice(&[0; 12]);
    for e in entries {
        out.extend_from_slice(&e.flags.to_le_bytes());
        out.extend_from_slice(&le32(str_offset + offsets[e.soname.as_str()]));
        out.extend_from_slice(&le32(str_offset + offsets[e.path.as_str()]));
        out.extend_from_slice(&[0; 4 + 8]);
    }
    out.extend_from_slice(&table);
    out.resize(extension_offset, 0);
    // One section: the generator (tag 0), right after the directory.
    out.extend_from_slice(&EXTENSION_MAGIC.to_le_bytes());
    out.extend_from_slice(&le32(1));
    out.extend_from_slice(&le32(0));
    out.extend_from_slice(&le32(0));
    out.extend_from_slice(&le32(extension_offset + 24));
    out.extend_from_slice(&le32(generator.len()));
    out.extend_from_slice(generator.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libcmp_compares_numbers_as_numbers() {
        assert_eq!(libcmp("libfoo.so.10", "libfoo.so.9"), Ordering::Greater);
        assert_eq!(libcmp("libfoo.so.1", "libfoo.so"), Ordering::Greater);
        assert_eq!(libcmp("libc.so.6", "libc.so.6"), Ordering::Equal);
        assert_eq!(libcmp("liba1", "libab"), Ordering::Greater);
        assert_eq!(libcmp("libab", "liba1"), Ordering::Less);
    }

    #[test]
    fn dso_names_are_ldconfigs() {
        for yes in [
            "libc.so.6",
            "ld-linux-x86-64.so.2",
            "ld.so.1",
            "ld64.so.2",
            "libx.so",
        ] {
            assert!(is_dso(yes), "{yes}");
        }
        for no in ["libc.a", "foo.so", "ld.so", "gconv-modules"] {
            assert!(!is_dso(no), "{no}");
        }
    }

    #[test]
    fn versions_lose_epoch_and_revision() {
        assert_eq!(upstream_version("2.36-9+deb12u14"), "2.36");
        assert_eq!(upstream_version("1:2.3-1-2"), "2.3-1");
        assert_eq!(upstream_version("5"), "5");
    }

    /// A minimal x86-64 shared object: one `PT_LOAD` at vaddr 0x1000 (file offset 0),
    /// a `PT_DYNAMIC` with `DT_SONAME` (unless `soname` is false) and `DT_STRTAB`.
    fn elf(soname: bool) -> Vec<u8> {
        let mut d = vec![0u8; 296];
        d[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        let put16 =
            |d: &mut Vec<u8>, at: usize, v: u16| d[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |d: &mut Vec<u8>, at: usize, v: u64| d[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put16(&mut d, 16, 3);
        put16(&mut d, 18, 62);
        put64(&mut d, 32, 64);
        put16(&mut d, 54, 56);
        put16(&mut d, 56, 2);
        // PT_LOAD, then PT_DYNAMIC at file offset 240, 48 bytes.
        d[64] = 1;
        put64(&mut d, 64 + 16, 0x1000);
        d[120] = 2;
        put64(&mut d, 120 + 8, 240);
        put64(&mut d, 120 + 32, 48);
        d[201..210].copy_from_slice(b"libx.so.1");
        let tags: [(u64, u64); 2] = [(if soname { 14 } else { 1 }, 1), (5, 0x1000 + 200)];
        for (i, (tag, value)) in tags.into_iter().enumerate() {
            put64(&mut d, 240 + 16 * i, tag);
            put64(&mut d, 248 + 16 * i, value);
        }
        d
    }

    #[test]
    fn the_soname_is_read_from_the_dynamic_section() {
        assert_eq!(
            shared_object_soname(&elf(true), 62),
            Some(Some("libx.so.1".into()))
        );
        assert_eq!(shared_object_soname(&elf(false), 62), Some(None));
        // Another machine, or not a shared object: left out.
        assert_eq!(shared_object_soname(&elf(true), 183), None);
        let mut exec = elf(true);
        exec[16] = 2;
        assert_eq!(shared_object_soname(&exec, 62), None);
        assert_eq!(shared_object_soname(b"INPUT(-lfoo)\n", 62), None);
    }

    proptest::proptest! {
        /// A damaged shared object (one 8-byte word changed, then cut short) gives a
        /// soname or nothing, never a panic: the bytes come from packages.
        #[test]
        fn a_damaged_shared_object_is_read_without_panicking(at in 0usize..37, word: u64, keep in 1usize..296) {
            let mut d = elf(true);
            d[at * 8..at * 8 + 8].copy_from_slice(&word.to_le_bytes());
            d.truncate(keep);
            let _ = shared_object_soname(&d, 62);
        }
    }

    #[test]
    fn an_include_loop_ends_and_a_library_is_listed_under_the_first_path_of_its_dir() {
        let inline = |b: &[u8]| Node::File(FileBytes::Inline(Arc::from(b)));
        let mut t = Tree::default();
        t.insert("lib", Node::Symlink("usr/lib".into()));
        t.insert(
            "etc/ld.so.conf",
            inline(b"include /etc/ld.so.con?\n # x\n/usr/lib/ \n"),
        );
        t.insert("usr/lib/libx.so.1", inline(&elf(true)));
        let config = LdSoCache {
            package: LIBC_BIN.into(),
            architecture: "amd64".into(),
            generator: "g".into(),
        };
        let cache = generate(&t, &config).unwrap();
        assert_eq!(cache.inputs.len(), 2);
        assert_eq!(cache.inputs[0].0, CONF);
        assert_eq!(cache.inputs[1].0, "/usr/lib/libx.so.1");
        let b = &cache.bytes;
        assert_eq!(&b[..20], MAGIC_NEW);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
        // Listed from /usr/lib (the conf's line), its soname's string shared as the
        // path's tail: "/usr/lib/libx.so.1\0".
        let strings = &b[HEADER_SIZE + ENTRY_SIZE..HEADER_SIZE + ENTRY_SIZE + 19];
        assert_eq!(strings, b"/usr/lib/libx.so.1\0");
        assert!(b.ends_with(b"g"));
    }

    #[test]
    fn paths_resolve_through_links_and_globs_sort() {
        let mut t = Tree::default();
        t.insert("lib", Node::Symlink("usr/lib".into()));
        t.insert(
            "usr/lib/x/liba.so.1",
            Node::File(FileBytes::Inline(Arc::from(&b""[..]))),
        );
        t.insert("etc/d/b.conf", Node::Dir);
        t.insert("etc/d/a.conf", Node::Dir);
        t.insert("etc/d/.h.conf", Node::Dir);
        assert_eq!(t.resolve("/lib/x/../x").as_deref(), Some("/usr/lib/x"));
        assert_eq!(t.resolve("/lib/y"), None);
        assert_eq!(
            glob(&t, "/etc/d/*.conf"),
            ["/etc/d/a.conf", "/etc/d/b.conf"]
        );
        assert!(wildcard(b"a*b?c*", b"axxbyc"));
        assert!(wildcard(b"*", b""));
        assert!(!wildcard(b"a*b", b"axxbc"));
        assert!(!wildcard(b"?", b""));
        // Linear in the stars, not exponential.
        assert!(!wildcard(&b"*a".repeat(40), &[b'a'; 39]));
    }
}
