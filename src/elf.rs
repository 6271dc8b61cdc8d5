//! A reader of 64-bit little-endian ELF files, enough for what cairn takes from them:
//! the program interpreter (`PT_INTERP`), the dynamic section's `DT_SONAME` and
//! `DT_NEEDED` (the ld.so cache, an initrd's libraries) and a named section's bytes
//! (a kernel module's `.modinfo`). The bytes are untrusted: every offset is checked,
//! and a malformed file gives `None`, never a panic.

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_SONAME: u64 = 14;
/// `e_type` of a shared object (and of a position-independent executable).
pub const ET_DYN: u16 = 3;
/// `e_machine` of x86-64.
pub const EM_X86_64: u16 = 62;

/// An ELF file's bytes, its header checked.
pub struct Elf<'a> {
    data: &'a [u8],
    pub file_type: u16,
    pub machine: u16,
}

/// What the dynamic section names: the object's own soname and the libraries it needs,
/// in the order the file lists them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dynamic<'a> {
    pub soname: Option<&'a str>,
    pub needed: Vec<&'a str>,
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    file_size: u64,
}

impl<'a> Elf<'a> {
    /// `None` unless `data` starts with a 64-bit little-endian ELF header.
    pub fn parse(data: &'a [u8]) -> Option<Elf<'a>> {
        if data.get(..6)? != b"\x7fELF\x02\x01" {
            return None;
        }
        let elf = Elf {
            data,
            file_type: 0,
            machine: 0,
        };
        Some(Elf {
            file_type: elf.u16_at(16)?,
            machine: elf.u16_at(18)?,
            ..elf
        })
    }

    fn bytes_at(&self, offset: u64, len: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }

    fn u16_at(&self, offset: u64) -> Option<u16> {
        Some(u16::from_le_bytes(
            self.bytes_at(offset, 2)?.try_into().ok()?,
        ))
    }

    fn u32_at(&self, offset: u64) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.bytes_at(offset, 4)?.try_into().ok()?,
        ))
    }

    fn u64_at(&self, offset: u64) -> Option<u64> {
        Some(u64::from_le_bytes(
            self.bytes_at(offset, 8)?.try_into().ok()?,
        ))
    }

    /// The NUL-terminated string at `offset`.
    fn str_at(&self, offset: u64) -> Option<&'a str> {
        let rest = self.data.get(usize::try_from(offset).ok()?..)?;
        std::str::from_utf8(&rest[..rest.iter().position(|b| *b == 0)?]).ok()
    }

    fn segments(&self) -> Option<Vec<Segment>> {
        let offset = self.u64_at(32)?;
        let (size, count) = (u64::from(self.u16_at(54)?), self.u16_at(56)?);
        (0..u64::from(count))
            .map(|i| {
                let at = offset.checked_add(i.checked_mul(size)?)?;
                Some(Segment {
                    kind: self.u32_at(at)?,
                    offset: self.u64_at(at.checked_add(8)?)?,
                    vaddr: self.u64_at(at.checked_add(16)?)?,
                    file_size: self.u64_at(at.checked_add(32)?)?,
                })
            })
            .collect()
    }

    /// The file offset of virtual address `vaddr`, by the first loadable segment's
    /// bias, as `ldconfig` reads a string table.
    fn file_offset(segments: &[Segment], vaddr: u64) -> Option<u64> {
        let bias = segments
            .iter()
            .find(|s| s.kind == PT_LOAD)
            .map_or(0, |s| s.vaddr.wrapping_sub(s.offset));
        Some(vaddr.wrapping_sub(bias))
    }

    /// The program interpreter (`/lib64/ld-linux-x86-64.so.2`) of a dynamically linked
    /// executable; `None` for a static one, a library or a malformed file.
    pub fn interpreter(&self) -> Option<&'a str> {
        let segment = self.segments()?.into_iter().find(|s| s.kind == PT_INTERP)?;
        let bytes = self.bytes_at(segment.offset, segment.file_size)?;
        std::str::from_utf8(bytes.split(|b| *b == 0).next()?).ok()
    }

    /// The dynamic section; `None` if the file has none (a static executable, a kernel
    /// module) or it cannot be read.
    pub fn dynamic(&self) -> Option<Dynamic<'a>> {
        let segments = self.segments()?;
        let section = segments
            .iter()
            .find(|s| s.kind == PT_DYNAMIC && s.file_size > 0)?;
        let (mut strtab, mut soname, mut needed) = (None, None, Vec::new());
        let end = section.offset.checked_add(section.file_size)?;
        let mut at = section.offset;
        while at.checked_add(16)? <= end {
            let (tag, value) = (self.u64_at(at)?, self.u64_at(at + 8)?);
            match tag {
                DT_NULL => break,
                DT_NEEDED => needed.push(value),
                DT_STRTAB => strtab = Some(value),
                DT_SONAME => soname = Some(value),
                _ => {}
            }
            at += 16;
        }
        let Some(strtab) = strtab else {
            return Some(Dynamic::default());
        };
        let strtab = Self::file_offset(&segments, strtab)?;
        let string = |offset: u64| self.str_at(strtab.checked_add(offset)?);
        Some(Dynamic {
            soname: soname.and_then(string),
            needed: needed.into_iter().map(string).collect::<Option<_>>()?,
        })
    }

    /// The bytes of the section called `name` (`.modinfo`).
    pub fn section(&self, name: &str) -> Option<&'a [u8]> {
        let offset = self.u64_at(40)?;
        let (size, count) = (u64::from(self.u16_at(58)?), self.u16_at(60)?);
        let header = |i: u64| offset.checked_add(i.checked_mul(size)?);
        let names = header(u64::from(self.u16_at(62)?))?;
        let names_offset = self.u64_at(names.checked_add(24)?)?;
        (0..u64::from(count)).find_map(|i| {
            let at = header(i)?;
            let name_at = names_offset.checked_add(u64::from(self.u32_at(at)?))?;
            if self.str_at(name_at)? != name {
                return None;
            }
            self.bytes_at(
                self.u64_at(at.checked_add(24)?)?,
                self.u64_at(at.checked_add(32)?)?,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host binaries are real ELF files of every kind the reader meets.
    fn host(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[test]
    fn reads_a_host_executables_interpreter_and_needed_libraries() {
        let bytes = host("/bin/ls");
        let elf = Elf::parse(&bytes).expect("/bin/ls is ELF");
        assert_eq!(elf.machine, EM_X86_64);
        assert_eq!(elf.interpreter(), Some("/lib64/ld-linux-x86-64.so.2"));
        let dynamic = elf.dynamic().expect("a dynamic section");
        assert!(dynamic.needed.contains(&"libc.so.6"), "{dynamic:?}");
        assert_eq!(dynamic.soname, None);
    }

    #[test]
    fn reads_a_librarys_soname() {
        let bytes = host("/lib/x86_64-linux-gnu/libc.so.6");
        let elf = Elf::parse(&bytes).unwrap();
        assert_eq!(elf.file_type, ET_DYN);
        assert_eq!(elf.dynamic().unwrap().soname, Some("libc.so.6"));
        assert_eq!(elf.interpreter(), Some("/lib64/ld-linux-x86-64.so.2"));
    }

    #[test]
    fn finds_a_named_section() {
        let bytes = host("/bin/ls");
        let elf = Elf::parse(&bytes).unwrap();
        let interp = elf.section(".interp").unwrap();
        assert_eq!(interp, b"/lib64/ld-linux-x86-64.so.2\0");
        assert_eq!(elf.section(".no-such-section"), None);
    }

    #[test]
    fn malformed_files_give_none() {
        assert!(Elf::parse(b"\x7fELF\x01\x01").is_none());
        assert!(Elf::parse(b"not elf at all").is_none());
        let bytes = host("/bin/ls");
        // Every truncation of a real file: no panic, and at most what the whole says.
        for len in (0..bytes.len().min(8192)).step_by(7) {
            if let Some(elf) = Elf::parse(&bytes[..len]) {
                let _ = (elf.interpreter(), elf.dynamic(), elf.section(".modinfo"));
            }
        }
    }
}
