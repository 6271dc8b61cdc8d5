//! Unified kernel images, built natively: the systemd-stub PE/COFF image (e.g.
//! `linuxx64.efi.stub` from Debian's `systemd-boot-efi`) with `.osrel`, `.cmdline`,
//! `.linux` and optionally `.initrd` sections appended, as the UAPI Group's UKI
//! specification lays out. Unlike `objcopy`, nothing time-dependent is written: the
//! COFF `TimeDateStamp` and the optional header's `CheckSum` are zero, the COFF symbol
//! table (not loaded) is dropped, and every new section follows the last one at the
//! image's own alignments.

const PE32_PLUS: u16 = 0x20b;
const SECTION_HEADER: usize = 40;
/// IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ
const DATA_READ: u32 = 0x4000_0040;

#[derive(Debug, thiserror::Error)]
#[error("the UEFI stub is not a usable PE32+ image: {0}")]
pub struct PeError(pub &'static str);

struct Layout {
    coff: usize,
    optional: usize,
    sections: usize,
    count: usize,
    section_alignment: u32,
    file_alignment: u32,
    size_of_headers: u32,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, PeError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(PeError("truncated header"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, PeError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(PeError("truncated header"))
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn align(v: u64, to: u32) -> u64 {
    v.div_ceil(u64::from(to)) * u64::from(to)
}

fn layout(pe: &[u8]) -> Result<Layout, PeError> {
    if pe.get(0..2) != Some(b"MZ") {
        return Err(PeError("no MZ header"));
    }
    let signature = u32_at(pe, 0x3c)? as usize;
    if pe.get(signature..signature + 4) != Some(b"PE\0\0") {
        return Err(PeError("no PE signature"));
    }
    let coff = signature + 4;
    if u16_at(pe, coff)? != 0x8664 {
        return Err(PeError("not an x86-64 image"));
    }
    let optional = coff + 20;
    if u16_at(pe, optional)? != PE32_PLUS {
        return Err(PeError("not PE32+"));
    }
    let l = Layout {
        coff,
        optional,
        sections: optional + usize::from(u16_at(pe, coff + 16)?),
        count: usize::from(u16_at(pe, coff + 2)?),
        section_alignment: u32_at(pe, optional + 32)?,
        file_alignment: u32_at(pe, optional + 36)?,
        size_of_headers: u32_at(pe, optional + 60)?,
    };
    if l.count == 0 || l.section_alignment == 0 || l.file_alignment == 0 {
        return Err(PeError("no sections or zero alignment"));
    }
    Ok(l)
}

/// The stub with `sections` (name, bytes) appended, in order.
pub fn build(stub: &[u8], sections: &[(&str, &[u8])]) -> Result<Vec<u8>, PeError> {
    let l = layout(stub)?;
    let table_end = l.sections + (l.count + sections.len()) * SECTION_HEADER;
    if table_end > l.size_of_headers as usize {
        return Err(PeError("no room for more section headers"));
    }
    // The end of the last section, in the file and in memory.
    let (mut file_end, mut memory_end) = (0u64, 0u64);
    for i in 0..l.count {
        let h = l.sections + i * SECTION_HEADER;
        let (virtual_size, address) = (u32_at(stub, h + 8)?, u32_at(stub, h + 12)?);
        let (raw_size, raw_at) = (u32_at(stub, h + 16)?, u32_at(stub, h + 20)?);
        file_end = file_end.max(u64::from(raw_at) + u64::from(raw_size));
        memory_end = memory_end.max(u64::from(address) + u64::from(virtual_size.max(raw_size)));
    }
    let file_end = usize::try_from(file_end).map_err(|_| PeError("section out of range"))?;
    if file_end > stub.len() {
        return Err(PeError("a section lies past the end of the file"));
    }
    let mut out = stub[..file_end].to_vec();
    for (i, (name, bytes)) in sections.iter().enumerate() {
        let raw_at = align(out.len() as u64, l.file_alignment);
        let raw_size = align(bytes.len() as u64, l.file_alignment);
        let address = align(memory_end, l.section_alignment);
        let too_big = |v: u64| u32::try_from(v).map_err(|_| PeError("image larger than 4 GiB"));
        out.resize(raw_at as usize, 0);
        out.extend_from_slice(bytes);
        out.resize((raw_at + raw_size) as usize, 0);
        let h = l.sections + (l.count + i) * SECTION_HEADER;
        let mut header = [0u8; SECTION_HEADER];
        header[..name.len().min(8)].copy_from_slice(&name.as_bytes()[..name.len().min(8)]);
        put_u32(&mut header, 8, too_big(bytes.len() as u64)?);
        put_u32(&mut header, 12, too_big(address)?);
        put_u32(&mut header, 16, too_big(raw_size)?);
        put_u32(&mut header, 20, too_big(raw_at)?);
        put_u32(&mut header, 36, DATA_READ);
        out[h..h + SECTION_HEADER].copy_from_slice(&header);
        memory_end = address + bytes.len() as u64;
    }
    let count =
        u16::try_from(l.count + sections.len()).map_err(|_| PeError("too many sections"))?;
    put_u16(&mut out, l.coff + 2, count);
    put_u32(&mut out, l.coff + 4, 0); // TimeDateStamp
    put_u32(&mut out, l.coff + 8, 0); // PointerToSymbolTable: the symbols were cut off
    put_u32(&mut out, l.coff + 12, 0); // NumberOfSymbols
    let size_of_image = u32::try_from(align(memory_end, l.section_alignment))
        .map_err(|_| PeError("image larger than 4 GiB"))?;
    put_u32(&mut out, l.optional + 56, size_of_image);
    put_u32(&mut out, l.optional + 64, 0); // CheckSum
                                           // A signed stub's certificate table lay past its last section and was cut off
                                           // with the symbols; its data directory entry must not point into the new sections.
    if u32_at(&out, l.optional + 108)? > 4 {
        put_u32(&mut out, l.optional + 112 + 32, 0);
        put_u32(&mut out, l.optional + 112 + 36, 0);
    }
    Ok(out)
}

/// One section of a PE image.
#[derive(Debug, PartialEq, Eq)]
pub struct Section<'a> {
    pub name: String,
    pub address: u32,
    pub bytes: &'a [u8],
}

/// The sections of a PE image, in header order.
pub fn sections(pe: &[u8]) -> Result<Vec<Section<'_>>, PeError> {
    let l = layout(pe)?;
    (0..l.count)
        .map(|i| {
            let h = l.sections + i * SECTION_HEADER;
            let name = String::from_utf8_lossy(&pe[h..h + 8])
                .trim_end_matches('\0')
                .to_string();
            let (size, address) = (u32_at(pe, h + 8)? as usize, u32_at(pe, h + 12)?);
            let raw_at = u32_at(pe, h + 20)? as usize;
            let raw_size = u32_at(pe, h + 16)? as usize;
            let bytes = pe
                .get(raw_at..raw_at + size.min(raw_size))
                .ok_or(PeError("section out of range"))?;
            Ok(Section {
                name,
                address,
                bytes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: headers in 0x400 bytes, one `.text` section.
    fn stub() -> Vec<u8> {
        let mut pe = vec![0u8; 0x600];
        pe[0..2].copy_from_slice(b"MZ");
        put_u32(&mut pe, 0x3c, 0x80);
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        put_u16(&mut pe, coff, 0x8664);
        put_u16(&mut pe, coff + 2, 1);
        put_u32(&mut pe, coff + 4, 0x1234_5678);
        put_u16(&mut pe, coff + 16, 240);
        let opt = coff + 20;
        put_u16(&mut pe, opt, PE32_PLUS);
        put_u32(&mut pe, opt + 32, 0x1000);
        put_u32(&mut pe, opt + 36, 0x200);
        put_u32(&mut pe, opt + 56, 0x2000);
        put_u32(&mut pe, opt + 60, 0x400);
        let s = opt + 240;
        pe[s..s + 5].copy_from_slice(b".text");
        put_u32(&mut pe, s + 8, 0x10);
        put_u32(&mut pe, s + 12, 0x1000);
        put_u32(&mut pe, s + 16, 0x200);
        put_u32(&mut pe, s + 20, 0x400);
        pe
    }

    #[test]
    fn appended_sections_follow_the_last_one_and_no_time_is_left() {
        let uki = build(
            &stub(),
            &[(".cmdline", b"console=ttyS0"), (".linux", &[7u8; 700])],
        )
        .unwrap();
        let s = sections(&uki).unwrap();
        let names: Vec<&str> = s.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, [".text", ".cmdline", ".linux"]);
        assert_eq!((s[1].address, s[1].bytes), (0x2000, &b"console=ttyS0"[..]));
        assert_eq!((s[2].address, s[2].bytes.len()), (0x3000, 700));
        assert_eq!(u32_at(&uki, 0x84 + 4).unwrap(), 0, "TimeDateStamp");
        assert_eq!(u32_at(&uki, 0x84 + 20 + 56).unwrap(), 0x4000, "SizeOfImage");
        assert_eq!(uki.len() % 0x200, 0);
    }

    #[test]
    fn not_a_pe_is_refused() {
        assert!(build(b"not a pe", &[]).is_err());
        let mut pe = stub();
        put_u16(&mut pe, 0x84, 0x14c);
        assert!(build(&pe, &[]).unwrap_err().0.contains("x86-64"));
    }
}
