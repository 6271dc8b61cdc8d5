//! The EFI system partition: a FAT file system written natively (the `fatfs` crate)
//! with a fixed volume id and label and no clock (every timestamp is the FAT epoch,
//! 1980-01-01 00:00), holding the unified kernel image at `\EFI\BOOT\BOOTX64.EFI`, the
//! path firmware boots from removable media without any boot entry.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// The EFI system partition type GUID, in textual byte order.
pub const ESP_TYPE: super::gpt::Guid = super::gpt::Guid([
    0xc1, 0x2a, 0x73, 0x28, 0xf8, 0x1f, 0x11, 0xd2, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
]);
pub const BOOT_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
const MIB: u64 = 1 << 20;

/// An ESP size with room for `payload` bytes of files: whole MiB, at least 8 MiB.
pub fn size_for(payload: u64) -> u64 {
    ((payload + 2 * MIB).div_ceil(MIB) * MIB).max(8 * MIB)
}

/// Writes a FAT file system of `size` bytes to a new file at `path` holding `uki` at
/// [`BOOT_PATH`].
pub fn write(path: &Path, size: u64, volume_id: u32, uki: &[u8]) -> io::Result<()> {
    let mut file = File::create_new(path)?;
    file.set_len(size)?;
    fatfs::format_volume(
        &mut file,
        fatfs::FormatVolumeOptions::new()
            .volume_id(volume_id)
            .volume_label(*b"ESP        "),
    )?;
    {
        let fs = fatfs::FileSystem::new(
            &mut file,
            fatfs::FsOptions::new().update_accessed_date(false),
        )?;
        {
            let boot = fs.root_dir().create_dir("EFI")?.create_dir("BOOT")?;
            let mut f = boot.create_file("BOOTX64.EFI")?;
            f.write_all(uki)?;
            f.flush()?;
        }
        fs.unmount()?;
    }
    file.sync_all()
}

/// Reads a file back from a FAT image (for tests and `verify`).
pub fn read(image: &Path, path: &str) -> io::Result<Vec<u8>> {
    let file = File::open(image)?;
    let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new())?;
    let mut f = fs.root_dir().open_file(path)?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut f, &mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_esp_holds_the_image_and_its_bytes_are_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let uki: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(&a, size_for(uki.len() as u64), 0x1234_5678, &uki).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        write(&b, size_for(uki.len() as u64), 0x1234_5678, &uki).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(read(&a, BOOT_PATH).unwrap(), uki);
    }
}
