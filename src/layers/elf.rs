//! ELF files built for another machine than the image's platform (an arm64 binary in
//! an amd64 image): found from the first 20 bytes of each regular file the recipe puts
//! into a layer, which hold the ELF identification (class, byte order) and `e_machine`.
//!
//! Takes the layer trees of one platform's image; gives one [`ForeignElf`] per file
//! whose header names another machine, class or byte order than the platform runs.
//! Files of a platform cairn has no ELF machine for, files shorter than a header and
//! files that are not ELF are never reported. Base-image files are not checked: they
//! are the base's, not the recipe's.

use super::tree::{FileData, LayerTree, Origin, TreeEntryKind};
use crate::recipe::Platform;
use std::fmt;
use std::fs::File;
use std::io::Read;

/// `\x7fELF`, then `EI_CLASS` at 4, `EI_DATA` at 5, and `e_machine` at 18..20.
const MAGIC: &[u8] = b"\x7fELF";
pub const HEADER_BYTES: usize = 20;

const CLASS_32: u8 = 1;
const CLASS_64: u8 = 2;
const LITTLE_ENDIAN: u8 = 1;
const BIG_ENDIAN: u8 = 2;

/// What an ELF header says a file runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfTarget {
    pub class: u8,
    pub data: u8,
    pub machine: u16,
}

impl ElfTarget {
    /// The target of the ELF file starting with `head`; `None` if it is not ELF (or
    /// too short to say).
    pub fn of(head: &[u8]) -> Option<ElfTarget> {
        let head = head.get(..HEADER_BYTES)?;
        if !head.starts_with(MAGIC) {
            return None;
        }
        let (class, data) = (head[4], head[5]);
        let machine = match data {
            LITTLE_ENDIAN => u16::from_le_bytes([head[18], head[19]]),
            BIG_ENDIAN => u16::from_be_bytes([head[18], head[19]]),
            _ => return None,
        };
        Some(ElfTarget {
            class,
            data,
            machine,
        })
    }

    /// What a file must say to run on `architecture` (an OCI/Go name); `None` for an
    /// architecture cairn does not know.
    pub fn of_architecture(architecture: &str) -> Option<ElfTarget> {
        let (class, data, machine) = match architecture {
            "amd64" => (CLASS_64, LITTLE_ENDIAN, 62),
            "386" => (CLASS_32, LITTLE_ENDIAN, 3),
            "arm64" => (CLASS_64, LITTLE_ENDIAN, 183),
            "arm" => (CLASS_32, LITTLE_ENDIAN, 40),
            "ppc64le" => (CLASS_64, LITTLE_ENDIAN, 21),
            "ppc64" => (CLASS_64, BIG_ENDIAN, 21),
            "s390x" => (CLASS_64, BIG_ENDIAN, 22),
            "riscv64" => (CLASS_64, LITTLE_ENDIAN, 243),
            "loong64" => (CLASS_64, LITTLE_ENDIAN, 258),
            "mips64le" => (CLASS_64, LITTLE_ENDIAN, 8),
            "mips64" => (CLASS_64, BIG_ENDIAN, 8),
            "mipsle" => (CLASS_32, LITTLE_ENDIAN, 8),
            "mips" => (CLASS_32, BIG_ENDIAN, 8),
            _ => return None,
        };
        Some(ElfTarget {
            class,
            data,
            machine,
        })
    }
}

/// `x86-64, 64-bit little-endian`.
impl fmt::Display for ElfTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let machine = match self.machine {
            3 => "x86 (i386)".to_string(),
            8 => "MIPS".to_string(),
            20 => "PowerPC".to_string(),
            21 => "PowerPC 64".to_string(),
            22 => "s390".to_string(),
            40 => "ARM (32-bit)".to_string(),
            62 => "x86-64".to_string(),
            183 => "AArch64 (arm64)".to_string(),
            243 => "RISC-V".to_string(),
            258 => "LoongArch".to_string(),
            other => format!("machine {other}"),
        };
        let class = match self.class {
            CLASS_32 => "32-bit",
            CLASS_64 => "64-bit",
            _ => "unknown class",
        };
        let data = if self.data == BIG_ENDIAN {
            "big-endian"
        } else {
            "little-endian"
        };
        write!(f, "{machine}, {class} {data}")
    }
}

/// A file of the image that is ELF for another machine than the image's platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignElf {
    /// The path in the image, `/usr/bin/hello`.
    pub path: String,
    /// Where it came from: `source `app``, `source `tools` member `bin/x``, or the recipe.
    pub from: String,
    pub found: ElfTarget,
    pub platform: String,
}

impl fmt::Display for ForeignElf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (from {}) is an ELF file for {}, but the image is for {}: it will not run there; build it for {} or give this platform its own source (`cairn build --strict` refuses such an image)",
            self.path, self.from, self.found, self.platform, self.platform
        )
    }
}

/// Every regular file in `trees` whose ELF header does not match `platform`.
pub fn foreign_files(trees: &[LayerTree], platform: &Platform) -> Vec<ForeignElf> {
    let Some(expected) = ElfTarget::of_architecture(&platform.architecture) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for tree in trees {
        for (key, entry) in &tree.entries {
            let TreeEntryKind::File(data) = &entry.kind else {
                continue;
            };
            let Some(target) = head(data, entry.origin.rel_path())
                .as_deref()
                .and_then(ElfTarget::of)
            else {
                continue;
            };
            if target != expected {
                found.push(ForeignElf {
                    path: format!("/{}", key.trim_end_matches('/')),
                    from: describe_origin(&entry.origin),
                    found: target,
                    platform: platform.to_string(),
                });
            }
        }
    }
    found
}

/// The first [`HEADER_BYTES`] of a file's data, if it has that many and they can be read
/// (a source file that cannot be read fails the layer writer, with its path, later).
/// `rel_path` is the entry's path in its source.
fn head(data: &FileData, rel_path: &str) -> Option<Vec<u8>> {
    match data {
        FileData::Inline(bytes) => bytes.get(..HEADER_BYTES).map(<[u8]>::to_vec),
        FileData::Source(content) => {
            if content.size < HEADER_BYTES as u64 {
                return None;
            }
            let mut head = vec![0; HEADER_BYTES];
            File::open(content.path_in(rel_path))
                .and_then(|mut f| f.read_exact(&mut head))
                .ok()?;
            Some(head)
        }
    }
}

fn describe_origin(origin: &Origin) -> String {
    match origin {
        Origin::Source { name, rel_path, .. } if rel_path.is_empty() => {
            format!("source `{name}`")
        }
        Origin::Source { name, rel_path, .. } => format!("source `{name}` member `{rel_path}`"),
        Origin::Recipe { line } => format!("the recipe, line {line}"),
        Origin::Generated(from) => format!("cairn, in place of a script of `{}`", from.by),
        Origin::Parent | Origin::Accounts | Origin::Sbom => "cairn".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 20 bytes of an ELF executable header.
    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = b"\x7fELF".to_vec();
        h.extend([class, data, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        h.extend([2, 0]); // e_type: executable (byte order does not matter for the test)
        let m = if data == BIG_ENDIAN {
            machine.to_be_bytes()
        } else {
            machine.to_le_bytes()
        };
        h.extend(m);
        h
    }

    #[test]
    fn reads_class_byte_order_and_machine() {
        let arm64 = ElfTarget::of(&header(CLASS_64, LITTLE_ENDIAN, 183)).unwrap();
        assert_eq!(Some(arm64), ElfTarget::of_architecture("arm64"));
        assert_ne!(Some(arm64), ElfTarget::of_architecture("amd64"));
        assert_eq!(arm64.to_string(), "AArch64 (arm64), 64-bit little-endian");
        let s390x = ElfTarget::of(&header(CLASS_64, BIG_ENDIAN, 22)).unwrap();
        assert_eq!(Some(s390x), ElfTarget::of_architecture("s390x"));
        // 32-bit x86-64 (x32) is not amd64.
        let x32 = ElfTarget::of(&header(CLASS_32, LITTLE_ENDIAN, 62)).unwrap();
        assert_ne!(Some(x32), ElfTarget::of_architecture("amd64"));
    }

    #[test]
    fn short_files_and_other_formats_are_not_elf() {
        assert_eq!(ElfTarget::of(b"\x7fELF\x02\x01"), None);
        assert_eq!(ElfTarget::of(b"#!/bin/sh\necho hello world\n"), None);
        let mut bad_order = header(CLASS_64, LITTLE_ENDIAN, 62);
        bad_order[5] = 7;
        assert_eq!(ElfTarget::of(&bad_order), None);
    }
}
