//! Unit tests of the disk stage's own decisions, without e2fsprogs or qemu: the raw
//! disk's GPT layout and digest, the kernel check, pinned inputs copied only while
//! they keep their digest, and which earlier outputs a build removes.

use super::*;
use crate::snapshot::{Content, Location};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

const MIB: u64 = 1 << 20;

fn content(path: &Path, bytes: &[u8]) -> Content {
    fs::write(path, bytes).unwrap();
    Content {
        location: Location::Path(std::sync::Arc::new(path.to_path_buf())),
        size: bytes.len() as u64,
        sha256: Sha256Digest::of(bytes),
    }
}

fn partition(name: &str, size: u64) -> gpt::Partition {
    gpt::Partition {
        type_guid: gpt::LINUX_ROOT_X86_64,
        guid: gpt::Guid::derived(&[name.as_bytes()]),
        offset: 0,
        size,
        name: name.into(),
    }
}

#[test]
fn the_raw_disk_puts_each_partition_on_a_whole_mib_and_hashes_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let esp_bytes = vec![0xe5; 3 * 512];
    let root_bytes: Vec<u8> = (0..(MIB + 4096)).map(|i| (i % 251) as u8 + 1).collect();
    let esp = dir.path().join("esp");
    let root = dir.path().join("root");
    fs::write(&esp, &esp_bytes).unwrap();
    fs::write(&root, &root_bytes).unwrap();
    let mut partitions = vec![
        (partition(ESP_PARTITION_NAME, esp_bytes.len() as u64), esp),
        (
            partition(ROOT_PARTITION_NAME, root_bytes.len() as u64),
            root,
        ),
    ];
    let raw = dir.path().join("disk.raw");
    let (sha256, size) =
        write_raw(&raw, &mut partitions, "hello", Sha256Digest::of(b"fs")).unwrap();

    // 1 MiB of table, the ESP rounded up to 1 MiB, the root to 2 MiB, 1 MiB for the
    // backup table.
    assert_eq!(size, 5 * MIB);
    let bytes = fs::read(&raw).unwrap();
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(sha256, Sha256Digest::of(&bytes));

    let mut file = File::open(&raw).unwrap();
    let (_, read) = gpt::read_partitions(&mut file).unwrap();
    let placed: Vec<(&str, u64, u64)> = read
        .iter()
        .map(|p| (p.name.as_str(), p.offset, p.size))
        .collect();
    assert_eq!(
        placed,
        [
            (ESP_PARTITION_NAME, MIB, esp_bytes.len() as u64),
            (ROOT_PARTITION_NAME, 2 * MIB, root_bytes.len() as u64),
        ]
    );
    assert_eq!(&bytes[MIB as usize..][..esp_bytes.len()], &esp_bytes[..]);
    assert_eq!(
        &bytes[2 * MIB as usize..][..root_bytes.len()],
        &root_bytes[..]
    );
    // The caller's partitions now carry their offsets (for the disk's attestations).
    assert_eq!(partitions[1].0.offset, 2 * MIB);
    // The backup header is in the last sector.
    file.seek(SeekFrom::Start(size - 512)).unwrap();
    let mut last = [0u8; 8];
    file.read_exact(&mut last).unwrap();
    assert_eq!(&last, b"EFI PART");
}

#[test]
fn the_raw_disk_leaves_zero_runs_as_holes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::write(&root, vec![1u8; 4096]).unwrap();
    let mut partitions = vec![(partition(ROOT_PARTITION_NAME, 64 * MIB), root)];
    let raw = dir.path().join("disk.raw");
    let (sha256, size) =
        write_raw(&raw, &mut partitions, "hello", Sha256Digest::of(b"fs")).unwrap();
    assert_eq!(size, 66 * MIB);
    let meta = fs::metadata(&raw).unwrap();
    assert_eq!(meta.len(), size);
    assert!(
        meta.blocks() * 512 < 8 * MIB,
        "a 66 MiB disk of mostly zeros takes {} bytes",
        meta.blocks() * 512
    );
    assert_eq!(sha256, Sha256Digest::of(&fs::read(&raw).unwrap()));
}

#[test]
fn the_raw_disk_never_writes_over_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::write(&root, [1u8; 512]).unwrap();
    let raw = dir.path().join("disk.raw");
    fs::write(&raw, b"an earlier disk").unwrap();
    let mut partitions = vec![(partition(ROOT_PARTITION_NAME, 512), root)];
    let err = write_raw(&raw, &mut partitions, "hello", Sha256Digest::of(b"fs")).unwrap_err();
    assert!(matches!(err, DiskError::Io { .. }), "{err:?}");
    assert_eq!(fs::read(&raw).unwrap(), b"an earlier disk");
}

#[test]
fn only_a_bzimage_is_taken_for_a_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let mut image = vec![0u8; 4096];
    image[0x202..0x206].copy_from_slice(b"HdrS");
    check_bzimage(&BootFile::pinned(content(
        &dir.path().join("vmlinuz"),
        &image,
    )))
    .unwrap();

    let elf = BootFile::pinned(content(
        &dir.path().join("vmlinux"),
        b"\x7fELF".repeat(1024).as_slice(),
    ));
    let why = check_bzimage(&elf).unwrap_err().to_string();
    assert!(why.contains("HdrS"), "{why}");

    let short = BootFile::pinned(content(&dir.path().join("short"), b"MZ"));
    let why = check_bzimage(&short).unwrap_err().to_string();
    assert!(why.contains("only 2 bytes long"), "{why}");
}

#[test]
fn a_pinned_input_is_copied_only_with_its_pinned_digest() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = content(&dir.path().join("vmlinuz"), b"kernel bytes");
    let kernel = BootFile::pinned(pinned.clone());
    let dest = dir.path().join("hello.vmlinuz");
    kernel.copy_to(&dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"kernel bytes");

    fs::write(pinned.path(), b"KERNEL BYTES").unwrap();
    let err = kernel.copy_to(&dir.path().join("again")).unwrap_err();
    match err {
        DiskError::SourceChanged {
            expected, found, ..
        } => {
            assert_eq!(expected, Sha256Digest::of(b"kernel bytes"));
            assert_eq!(found, Sha256Digest::of(b"KERNEL BYTES"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stale_disk_outputs_go_and_everything_else_stays() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    for name in [
        "hello.raw",
        "hello.qcow2",
        "hello.initrd",
        "hello.vmlinuz",
        "hello.tar",
        "other.raw",
    ] {
        fs::write(out.join(name), b"x").unwrap();
    }
    remove_stale(
        out,
        "hello",
        &["hello.qcow2".into(), "hello.vmlinuz".into()],
    )
    .unwrap();
    let mut left: Vec<String> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["hello.qcow2", "hello.tar", "hello.vmlinuz", "other.raw"]
    );
}

#[test]
fn the_run_hint_of_a_uefi_disk_boots_firmware_and_never_names_a_kernel() {
    let report = |boot: BootMode| DiskReport {
        files: vec![DiskFile {
            format: "qcow2",
            path: "out/vm.qcow2".into(),
            sha256: Sha256Digest::of(b"disk"),
            size: 4,
        }],
        kernel: "out/vm.vmlinuz".into(),
        kernel_in_image: None,
        cmdline: "out/vm.cmdline".into(),
        initrd: None,
        verity: None,
        boot: boot.name(),
        root_fs: "ext4",
        root_size: 1 << 20,
        attestations: None,
        tools: Default::default(),
        cached: false,
        secure_boot_cert: None,
    };
    let uefi = report(BootMode::Uefi).run_hint();
    assert!(
        !uefi.contains("-kernel ") && !uefi.contains("vmlinuz"),
        "{uefi}"
    );
    assert!(uefi.contains("OVMF_CODE.fd"), "{uefi}");
    assert!(uefi.contains("file=out/vm.qcow2,format=qcow2"), "{uefi}");
    assert_eq!(
        report(BootMode::Direct).run_hint(),
        "boot: -kernel out/vm.vmlinuz -append \"$(cat out/vm.cmdline)\""
    );
}
