//! The bench's input: a deterministic file tree of about N MiB shaped like a root file
//! system (at 300 MiB about 12k entries, like the 314 MB rootfs in shared/CRATES.md).
//!
//! About 37% of the bytes are thousands of 0.5–20 KiB text-like files (words from a fixed
//! vocabulary, compressible like source and docs) in nested directories; the rest are a
//! few 10–50 MiB files, half text-like and half pseudo-random or mixed blocks like
//! binaries and media. Plus sibling and absolute symlinks, executables and empty
//! directories. The same size gives the same tree on every host (one seeded PRNG, one
//! thread, explicit modes). A stamp file records the parameters, so an existing tree with
//! the same parameters is reused instead of regenerated.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::prng::SplitMix64;

pub const MIB: u64 = 1024 * 1024;

/// Bump when the generator's output changes, so stale trees are regenerated.
const GENERATOR_VERSION: u32 = 1;
const SEED: u64 = 0x6361_6972_6E62_656E;
const STAMP_FILE: &str = "stamp";
/// The generated tree's directory name inside the bench directory.
pub const TREE_DIR: &str = "tree";

const SMALL_FILES_PER_MIB: u64 = 37;
const SMALL_FILE_MIN: u64 = 512;
const SMALL_FILE_MAX: u64 = 20 * 1024;
const LARGE_FILE_MIN: u64 = 10 * MIB;
const LARGE_FILE_MAX: u64 = 50 * MIB;
const MAX_DIR_DEPTH: usize = 8;
const CHUNK: usize = MIB as usize;
const MIXED_BLOCK: usize = 64 * 1024;

const EXTENSIONS: &[&str] = &[
    "rs", "c", "h", "py", "md", "txt", "json", "yaml", "html", "sh", "conf", "1",
];

const VOCABULARY: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "for",
    "that",
    "with",
    "fn",
    "let",
    "return",
    "if",
    "else",
    "struct",
    "impl",
    "self",
    "pub",
    "use",
    "mut",
    "const",
    "static",
    "match",
    "int",
    "void",
    "char",
    "unsigned",
    "size_t",
    "NULL",
    "true",
    "false",
    "def",
    "import",
    "class",
    "from",
    "None",
    "error",
    "value",
    "data",
    "buffer",
    "length",
    "offset",
    "index",
    "count",
    "file",
    "path",
    "name",
    "type",
    "config",
    "options",
    "result",
    "string",
    "list",
    "map",
    "key",
    "entry",
    "node",
    "tree",
    "layer",
    "image",
    "digest",
    "manifest",
    "archive",
    "stream",
    "reader",
    "writer",
    "header",
    "block",
    "checksum",
    "version",
    "package",
    "module",
    "library",
    "function",
    "argument",
    "parameter",
    "default",
    "table",
    "context",
    "handle",
    "request",
    "response",
    "server",
    "client",
    "socket",
    "address",
    "port",
    "timeout",
    "retry",
    "cache",
    "memory",
    "thread",
    "lock",
    "queue",
    "event",
    "signal",
    "process",
    "command",
    "output",
    "input",
    "format",
    "parse",
    "encode",
    "decode",
    "compress",
    "expand",
    "verify",
    "build",
    "install",
    "remove",
    "update",
    "license",
    "copyright",
    "permission",
    "software",
    "distributed",
    "warranty",
    "see",
    "documentation",
    "example",
    "usage",
    "note",
    "this",
    "which",
    "when",
    "must",
    "should",
    "may",
    "not",
    "be",
    "are",
    "can",
    "will",
    "each",
    "all",
    "any",
    "one",
    "two",
    "new",
    "old",
    "first",
    "last",
    "next",
    "user",
    "group",
    "owner",
    "mode",
    "time",
    "date",
    "TODO",
    "FIXME",
    "assert",
    "debug",
    "info",
    "warn",
    "trace",
    "test",
    "check",
    "init",
    "0",
    "1",
    "2",
    "16",
    "64",
    "255",
    "4096",
    "0x00",
    "0xff",
    "i",
    "j",
    "n",
    "x",
    "y",
];

const SEPARATORS: &[&str] = &[
    " ", " ", " ", " ", " ", " ", " ", " ", ", ", ". ", "; ", "(", ") ", " = ", "::", "->", " { ",
    " }", "_", "/",
];

/// What `ensure` found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchTree {
    /// The tree itself (`<bench dir>/tree`).
    pub root: PathBuf,
    /// Files, directories and symlinks below the root.
    pub entries: u64,
    /// Sum of regular file sizes.
    pub bytes: u64,
    pub reused: bool,
}

/// Makes sure `bench_dir` holds the tree for `size_mib`, regenerating it unless its
/// stamp matches. Generation happens in a sibling `.partial` directory that is renamed
/// into place, so an interrupted run never leaves a half tree behind a valid stamp.
pub fn ensure(bench_dir: &Path, size_mib: u64) -> Result<BenchTree> {
    if size_mib == 0 {
        bail!("--size-mb must be at least 1");
    }
    let parameters = stamp_parameters(size_mib);
    let root = bench_dir.join(TREE_DIR);
    if let Some((entries, bytes)) = read_stamp(&bench_dir.join(STAMP_FILE), &parameters) {
        if root.is_dir() {
            return Ok(BenchTree {
                root,
                entries,
                bytes,
                reused: true,
            });
        }
    }
    let partial = bench_dir.with_extension("partial");
    for dir in [bench_dir, partial.as_path()] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    let (entries, bytes) = generate(&partial.join(TREE_DIR), size_mib)?;
    let stamp = format!("{parameters}\nentries={entries}\nbytes={bytes}\n");
    fs::write(partial.join(STAMP_FILE), stamp)?;
    fs::rename(&partial, bench_dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), bench_dir.display()))?;
    Ok(BenchTree {
        root,
        entries,
        bytes,
        reused: false,
    })
}

fn stamp_parameters(size_mib: u64) -> String {
    format!("cairn-bench-tree v{GENERATOR_VERSION} seed={SEED:#x} size_mib={size_mib}")
}

/// `(entries, bytes)` from a stamp whose first line is `parameters`.
fn read_stamp(path: &Path, parameters: &str) -> Option<(u64, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    if lines.next()? != parameters {
        return None;
    }
    let entries = lines.next()?.strip_prefix("entries=")?.parse().ok()?;
    let bytes = lines.next()?.strip_prefix("bytes=")?.parse().ok()?;
    Some((entries, bytes))
}

/// Writes the tree for `size_mib` at `root` (which must not exist) and returns
/// `(entries, bytes)`.
fn generate(root: &Path, size_mib: u64) -> Result<(u64, u64)> {
    let mut rng = SplitMix64::new(SEED);
    let small_count = size_mib * SMALL_FILES_PER_MIB;
    let dir_count = (small_count / 12).max(1);
    let mut entries = 0;

    // Directories; index 0 is the root. A random recursive tree, depth capped.
    let mut dirs: Vec<(PathBuf, usize)> = vec![(PathBuf::new(), 0)];
    create_dir(root)?;
    for i in 1..dir_count {
        let parent = loop {
            let candidate = rng.below(i) as usize;
            if dirs[candidate].1 < MAX_DIR_DEPTH {
                break candidate;
            }
        };
        let path = dirs[parent].0.join(format!("{}_{i}", word(&mut rng)));
        create_dir(&root.join(&path))?;
        dirs.push((path, dirs[parent].1 + 1));
        entries += 1;
    }

    // Small text-like files.
    let mut small_files = Vec::new();
    let mut small_bytes = 0;
    let mut content = Vec::with_capacity(SMALL_FILE_MAX as usize + 64);
    for j in 0..small_count {
        let dir = &dirs[rng.below(dirs.len() as u64) as usize].0;
        let extension = EXTENSIONS[rng.below(EXTENSIONS.len() as u64) as usize];
        let path = dir.join(format!("{}_{j}.{extension}", word(&mut rng)));
        let size = rng.between(SMALL_FILE_MIN, SMALL_FILE_MAX);
        content.clear();
        push_text(&mut rng, &mut content, size as usize);
        // About 3% executables (scripts); the first file always, so every tree has one.
        let mode = if j % 33 == 0 { 0o755 } else { 0o644 };
        write_file(&root.join(&path), &content, mode)?;
        small_files.push(path);
        small_bytes += size;
        entries += 1;
    }

    // Symlinks: mostly to a sibling file, some absolute (dangling here, as in a rootfs).
    for k in 0..(small_count / 100).max(1) {
        let target_file = &small_files[rng.below(small_files.len() as u64) as usize];
        let target = if k % 10 == 9 {
            PathBuf::from(format!("/usr/lib/{}", word(&mut rng)))
        } else {
            PathBuf::from(target_file.file_name().context("file without a name")?)
        };
        let link = target_file.with_file_name(format!("link_{k}"));
        symlink(&target, root.join(&link))
            .with_context(|| format!("creating symlink {}", link.display()))?;
        entries += 1;
    }

    for k in 0..(small_count / 200).max(1) {
        let parent = &dirs[rng.below(dirs.len() as u64) as usize].0;
        create_dir(&root.join(parent).join(format!("empty_{k}")))?;
        entries += 1;
    }

    // Large files fill the rest: text, random, text, mixed, ...
    let mut remaining = (size_mib * MIB).saturating_sub(small_bytes);
    let mut large_bytes = 0;
    let mut index = 0;
    while remaining > 0 {
        let mut size = rng.between(LARGE_FILE_MIN, LARGE_FILE_MAX).min(remaining);
        if remaining - size < MIB {
            size = remaining;
        }
        let kind = match index % 4 {
            0 | 2 => LargeKind::Text,
            1 => LargeKind::Random,
            _ => LargeKind::Mixed,
        };
        let dir = &dirs[rng.below(dirs.len() as u64) as usize].0;
        let path = root
            .join(dir)
            .join(format!("blob_{index}.{}", kind.extension()));
        write_large_file(&mut rng, &path, size, kind)?;
        remaining -= size;
        large_bytes += size;
        index += 1;
        entries += 1;
    }
    Ok((entries, small_bytes + large_bytes))
}

#[derive(Clone, Copy)]
enum LargeKind {
    /// Like logs or a text database.
    Text,
    /// Like compressed media: incompressible.
    Random,
    /// Like a binary: text sections, random sections and zero padding.
    Mixed,
}

impl LargeKind {
    fn extension(self) -> &'static str {
        match self {
            LargeKind::Text => "txt",
            LargeKind::Random => "img",
            LargeKind::Mixed => "bin",
        }
    }

    fn mode(self) -> u32 {
        match self {
            LargeKind::Mixed => 0o755,
            LargeKind::Text | LargeKind::Random => 0o644,
        }
    }
}

fn write_large_file(rng: &mut SplitMix64, path: &Path, size: u64, kind: LargeKind) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(CHUNK, file);
    let mut chunk = Vec::with_capacity(CHUNK + 64);
    let mut left = size as usize;
    while left > 0 {
        let n = left.min(CHUNK);
        chunk.clear();
        match kind {
            LargeKind::Text => push_text(rng, &mut chunk, n),
            LargeKind::Random => push_random(rng, &mut chunk, n),
            LargeKind::Mixed => {
                while chunk.len() < n {
                    let block = (n - chunk.len()).min(MIXED_BLOCK);
                    match rng.below(10) {
                        0..=3 => push_text(rng, &mut chunk, block),
                        4..=7 => push_random(rng, &mut chunk, block),
                        _ => chunk.resize(chunk.len() + block, 0),
                    }
                }
            }
        }
        out.write_all(&chunk)
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, kind.mode())
}

fn word(rng: &mut SplitMix64) -> &'static str {
    VOCABULARY[rng.below(VOCABULARY.len() as u64) as usize]
}

/// Appends exactly `n` bytes of source-like lines: indentation, common words often,
/// rare words seldom, punctuation between them.
fn push_text(rng: &mut SplitMix64, buf: &mut Vec<u8>, n: usize) {
    let end = buf.len() + n;
    while buf.len() < end {
        let indent = rng.below(4) as usize * 4;
        buf.resize(buf.len() + indent, b' ');
        for _ in 0..rng.between(2, 12) {
            let word = VOCABULARY[rng.skewed_below(VOCABULARY.len() as u64) as usize];
            buf.extend_from_slice(word.as_bytes());
            let separator = SEPARATORS[rng.below(SEPARATORS.len() as u64) as usize];
            buf.extend_from_slice(separator.as_bytes());
        }
        buf.push(b'\n');
    }
    buf.truncate(end);
}

fn push_random(rng: &mut SplitMix64, buf: &mut Vec<u8>, n: usize) {
    let end = buf.len() + n;
    while buf.len() < end {
        buf.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    buf.truncate(end);
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    set_mode(path, 0o755)
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

/// Explicit modes, so the tree does not depend on the umask.
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A fresh directory under the system temp dir, removed on drop.
    struct ScratchDir(PathBuf);

    impl ScratchDir {
        fn new(label: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "xtask-{label}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create scratch dir");
            ScratchDir(dir)
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Every entry below `root`, sorted: path, kind, mode and content or link target.
    fn snapshot(root: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("dir entry").path();
                let meta = fs::symlink_metadata(&path).expect("metadata");
                let relative = path.strip_prefix(root).expect("below root").display();
                let mode = meta.mode() & 0o7777;
                if meta.file_type().is_symlink() {
                    let target = fs::read_link(&path).expect("read_link");
                    lines.push(format!("{relative} link -> {}", target.display()));
                } else if meta.is_dir() {
                    lines.push(format!("{relative} dir {mode:o}"));
                    pending.push(path);
                } else {
                    let content = fs::read(&path).expect("read");
                    let sum = content.iter().fold(0u64, |acc, &b| {
                        acc.wrapping_mul(31).wrapping_add(u64::from(b))
                    });
                    lines.push(format!(
                        "{relative} file {mode:o} {} {sum:x}",
                        content.len()
                    ));
                }
            }
        }
        lines.sort();
        lines
    }

    #[test]
    fn same_size_gives_identical_tree_with_every_entry_kind() {
        let scratch = ScratchDir::new("tree-determinism");
        let first = ensure(&scratch.0.join("a"), 2).expect("generate a");
        let second = ensure(&scratch.0.join("b"), 2).expect("generate b");
        let listing = snapshot(&first.root);
        assert_eq!(listing, snapshot(&second.root));
        assert_eq!(listing.len() as u64, first.entries);
        assert_eq!(first.bytes, 2 * MIB);
        for kind in [
            " dir ",
            " file 644 ",
            " file 755 ",
            " link -> ",
            "blob_0.txt ",
        ] {
            assert!(
                listing.iter().any(|line| line.contains(kind)),
                "no entry like `{kind}`"
            );
        }
        assert!(listing.iter().any(|line| line.contains("empty_0 dir")));
    }

    #[test]
    fn matching_stamp_reuses_tree_and_changed_parameters_regenerate() {
        let scratch = ScratchDir::new("tree-stamp");
        let bench_dir = scratch.0.join("bench");
        let generated = ensure(&bench_dir, 1).expect("generate");
        assert!(!generated.reused);
        let sentinel = generated.root.join("sentinel");
        fs::write(&sentinel, b"kept").expect("write sentinel");

        let reused = ensure(&bench_dir, 1).expect("reuse");
        assert!(reused.reused);
        assert_eq!(
            (reused.entries, reused.bytes),
            (generated.entries, generated.bytes)
        );
        assert!(sentinel.exists(), "a matching tree must not be regenerated");

        fs::write(bench_dir.join(STAMP_FILE), "cairn-bench-tree v0\n").expect("stale stamp");
        let regenerated = ensure(&bench_dir, 1).expect("regenerate");
        assert!(!regenerated.reused);
        assert!(!sentinel.exists(), "a stale tree must be replaced");
        assert_eq!(
            snapshot(&regenerated.root).len() as u64,
            regenerated.entries
        );
    }
}
