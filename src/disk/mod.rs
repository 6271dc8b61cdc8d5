//! VM disks: a recipe with `vm:` also gets a bootable GPT disk whose root partition
//! holds the image's final root file system (every layer applied, the SBOMs embedded
//! at `/usr/share/sbom`), written reproducibly as raw and qcow2.
//!
//! Stages: [`plan`] (right after the sources are resolved, before anything is built:
//! tools found and pinned, kernel checked) -> [`write`] (after the image: merged tree
//! ([`rootfs`]) -> ext4 ([`ext4`]) or squashfs ([`squashfs`]) -> GPT disk ([`gpt`], native) -> qcow2 ([`qcow2`],
//! native), staged beside the outputs; or the same files replayed from the layer cache
//! by [`crate::warm`], copied with [`sparse`]) -> [`finish`] (command line, signed
//! statements about the disk ([`attest`])) -> [`DiskBuild::publish`] (files
//! renamed into place beside the layout). [`read`] opens a disk again for `verify`
//! and `trace`.
//!
//! `root.verity: true` adds a dm-verity hash partition over the root image's bytes
//! ([`verity`], native) and the root hash to the kernel command line.
//!
//! `boot: uefi` adds an EFI system partition ([`esp`], FAT, native) holding a unified
//! kernel image ([`uki`], PE, native) built on a pinned systemd-stub.
//!
//! What is native and what is not: GPT, the raw disk, qcow2, FAT, the PE image and
//! ext4 are written by cairn; squashfs by `mksquashfs` (squashfs-tools), whose version
//! is pinned ([`tools`]). Reading a disk back (`verify`, `trace`) uses `qemu-img` for
//! a qcow2 and `debugfs` (e2fsprogs) for ext4: readers independent of the writer.

pub mod attest;
pub mod authenticode;
pub mod boot;
pub mod cpio;
pub mod esp;
pub mod ext4;
pub mod gpt;
pub mod initrd;
pub mod qcow2;
pub mod read;
pub mod rootfs;
pub mod secure_boot;
pub mod sparse;
pub mod squashfs;
pub mod tools;
pub mod uki;
pub mod verity;

use crate::attest::intoto::ProvenanceFacts;
use crate::diag::{Diagnose, Location};
use crate::digest::Sha256Digest;
use crate::keys::SigningKey;
use crate::layers::LayerTree;
use crate::recipe::{
    BootMode, Diagnostic, DiskFormat, Recipe, RootFsType, VmFile, VmFileFrom, VmInitrd, VmSpec,
};
use crate::resolve::{LockMode, Lockfile, ResolvedSources};
use crate::snapshot::SourceEntryKind;
use boot::{BootFile, BootFiles, BootIds, ImageFile};
use secure_boot::SecureBootKey;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tools::{ToolError, Tools};

/// The root partition's GPT name, for `root=PARTLABEL=root`.
pub const ROOT_PARTITION_NAME: &str = "root";
/// The EFI system partition's GPT name (`boot: uefi`).
pub const ESP_PARTITION_NAME: &str = "esp";

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A problem with the recipe's `vm:` section or its inputs, located in the recipe.
    #[error("{0}")]
    Located(Box<Diagnostic>),
    #[error("the root file system does not fit in `size` ({} MiB){}", size >> 20, needed.map_or(String::new(), |n| format!(": it needs about {} MiB", n.div_ceil(1 << 20))))]
    RootTooSmall { size: u64, needed: Option<u64> },
    #[error("{path} cannot be written to the ext4 root: {why}")]
    Unrepresentable { path: String, why: &'static str },
    #[error("{tool} failed: {detail}")]
    Tool { tool: String, detail: String },
    #[error("{path} changed during the build: expected {expected}, found {found}")]
    SourceChanged {
        path: PathBuf,
        expected: Sha256Digest,
        found: Sha256Digest,
    },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Verity(#[from] verity::VerityError),
}

impl Diagnose for DiskError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            DiskError::Located(diagnostic) => diagnostic.hint(),
            _ => None,
        }
    }

    fn location(&self) -> Option<Location<'_>> {
        match self {
            DiskError::Located(diagnostic) => diagnostic.location(),
            _ => None,
        }
    }
}

impl DiskError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> DiskError + '_ {
        move |source| DiskError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn located(recipe: &Recipe, at: crate::recipe::Span, message: String, hint: String) -> DiskError {
    DiskError::Located(Box::new(
        Diagnostic::new(&recipe.file, at, message).with_hint(hint),
    ))
}

/// What [`plan`] found: the tools to run, and the kernel, initrd and stub the recipe
/// takes from sources, pinned and checked. Those it takes from the image are `None`
/// here: [`boot::BootFiles::find`] finds them once the layers exist.
#[derive(Debug)]
pub struct DiskPlan {
    pub vm: VmSpec,
    pub tools: Tools,
    pub kernel: Option<BootFile>,
    pub initrd: Option<BootFile>,
    /// The UEFI stub, for `boot: uefi`.
    pub stub: Option<BootFile>,
    /// Signs the unified kernel image; set by [`secure_boot_key`] once the build
    /// knows where the key comes from (`cairn lock` never reads it).
    pub secure_boot: Option<SecureBootKey>,
}

/// Checks the `vm:` inputs before anything is built: the tools are installed and
/// their versions match the lock (pinned into `resolved.lock`), a kernel from a source
/// is a bzImage, a stub from a source can carry a kernel. Returns the warnings of
/// newly pinned tools.
pub fn plan(
    recipe: &Recipe,
    vm: &VmSpec,
    resolved: &mut ResolvedSources,
    old_lock: &Lockfile,
    lock_path: &Path,
    mode: LockMode,
) -> Result<DiskPlan, DiskError> {
    let kernel = source_file(recipe, resolved, &vm.kernel, "kernel")?;
    if let Some(kernel) = &kernel {
        check_kernel(recipe, &vm.kernel, kernel)?;
    }
    let initrd = match &vm.initrd {
        Some(VmInitrd::File(file)) => source_file(recipe, resolved, file, "initrd")?,
        Some(VmInitrd::Built(_)) | None => None,
    };
    let stub = match &vm.stub {
        Some(file) => {
            let stub = source_file(recipe, resolved, file, "stub")?;
            if let Some(stub) = &stub {
                check_stub(recipe, file, stub)?;
            }
            stub
        }
        None => None,
    };
    let tool_error = |e: ToolError| {
        DiskError::Located(Box::new(
            Diagnostic::new(&recipe.file, vm.span, e.to_string()).with_hint_of(&e),
        ))
    };
    let tools = tools::find(vm.root.fs).map_err(tool_error)?;
    let warnings =
        tools::pin(&tools, old_lock, &mut resolved.lock, lock_path, mode).map_err(tool_error)?;
    resolved.warnings.extend(warnings);
    resolved.lock_changed = resolved.lock != *old_lock;
    Ok(DiskPlan {
        vm: vm.clone(),
        tools,
        kernel,
        initrd,
        stub,
        secure_boot: None,
    })
}

/// The key that signs the unified kernel image: `given` (the `--secure-boot-key` and
/// `--secure-boot-cert` flags) over the recipe's `vm.secure_boot`, whose paths are
/// relative to the recipe file. Read and checked before anything is built.
pub fn secure_boot_key(
    recipe: &Recipe,
    vm: &VmSpec,
    given: Option<&SecureBootKey>,
) -> Result<Option<SecureBootKey>, DiskError> {
    if let Some(given) = given {
        if vm.boot != BootMode::Uefi {
            return Err(located(
                recipe,
                vm.span,
                "Secure Boot signs the unified kernel image of `boot: uefi`, and this `vm:` boots directly".into(),
                "write `boot: uefi` with a `stub`, or leave out --secure-boot-key and --secure-boot-cert".into(),
            ));
        }
        return Ok(Some(given.clone()));
    }
    let Some(spec) = &vm.secure_boot else {
        return Ok(None);
    };
    SecureBootKey::read(&recipe.file.dir, spec.key.as_ref(), spec.cert.as_ref())
        .map(Some)
        .map_err(|e| {
            DiskError::Located(Box::new(
                Diagnostic::new(&recipe.file, spec.span, e.to_string()).with_hint_of(&e),
            ))
        })
}

/// The kernel is a bzImage.
fn check_kernel(recipe: &Recipe, file: &VmFile, kernel: &BootFile) -> Result<(), DiskError> {
    check_bzimage(kernel).map_err(|why| {
        located(
            recipe,
            file.span,
            format!("the kernel ({}) is not a bzImage: {why}", kernel.describe()),
            "give an x86 Linux kernel image, e.g. /boot/vmlinuz-* from a linux-image package"
                .into(),
        )
    })
}

/// The stub is a PE image a unified kernel image can be built on.
fn check_stub(recipe: &Recipe, file: &VmFile, stub: &BootFile) -> Result<(), DiskError> {
    let bytes = stub.read()?;
    uki::build(&bytes, &[]).map(drop).map_err(|e| {
        located(
            recipe,
            file.span,
            format!("{} ({})", e, stub.describe()),
            "give systemd-stub for x86-64: linuxx64.efi.stub from Debian's systemd-boot-efi".into(),
        )
    })
}

/// The file a `kernel:`/`initrd:`/`stub:` names from a source, from its resolved
/// source; `None` for a file of the image.
fn source_file(
    recipe: &Recipe,
    resolved: &ResolvedSources,
    file: &VmFile,
    what: &str,
) -> Result<Option<BootFile>, DiskError> {
    let VmFileFrom::Source { name, path } = &file.from else {
        return Ok(None);
    };
    let source = &resolved.sources[name];
    let want = path.as_deref().unwrap_or("");
    let mut found = source.tree().entries.iter().find(|e| &*e.rel_path == want);
    if let Some(SourceEntryKind::Hardlink { target }) = found.map(|e| &e.kind) {
        found = source
            .tree()
            .entries
            .iter()
            .find(|e| *e.rel_path == **target);
    }
    match found.map(|e| (&e.kind, &e.rel_path)) {
        Some((SourceEntryKind::File(content), rel_path)) => {
            Ok(Some(BootFile::pinned(content.standalone(rel_path))))
        }
        _ => {
            let (message, hint) = match path {
                None => (
                    format!("the {what} source `{name}` is not a single file"),
                    format!(
                        "name the file inside it: `{what}: {{ source: {name}, path: boot/... }}`"
                    ),
                ),
                Some(p) => (
                    format!("source `{name}` has no regular file `{p}`"),
                    format!("check the path of the {what} inside the source"),
                ),
            };
            Err(located(recipe, file.span, message, hint))
        }
    }
}

/// Why a kernel file is not a bzImage; the text follows "is not a bzImage: ".
#[derive(Debug, thiserror::Error)]
enum NotBzImage {
    #[error("{0}")]
    Unreadable(io::Error),
    #[error("it is only {0} bytes long")]
    TooShort(u64),
    #[error("it lacks the \"HdrS\" boot protocol signature at offset 0x202")]
    NoSignature,
}

/// The x86 boot protocol: "HdrS" at 0x202, in an image of at least a few sectors.
fn check_bzimage(kernel: &BootFile) -> Result<(), NotBzImage> {
    let header = kernel.head(0x210).map_err(NotBzImage::Unreadable)?;
    if header.len() < 0x210 {
        return Err(NotBzImage::TooShort(header.len() as u64));
    }
    if &header[0x202..0x206] != b"HdrS" {
        return Err(NotBzImage::NoSignature);
    }
    Ok(())
}

/// What the disk stage needs from the image build, whether the disk is written or
/// replayed from the layer cache.
pub struct DiskInput<'a> {
    pub recipe: &'a Recipe,
    pub epoch: u64,
    pub out_dir: &'a Path,
    /// The image's SPDX document (a blob of `spdx_size` bytes), read as it is signed.
    pub spdx: &'a Path,
    pub spdx_size: u64,
    /// The image's provenance facts, which the disk's provenance extends.
    pub provenance: ProvenanceFacts<'a>,
    pub sign_key: Option<&'a SigningKey>,
}

/// The initrd written beside a disk: where, its SHA-256 and, for one cairn built from
/// the image (`vm.initrd: { init, files, modules }`), how many members it holds.
#[derive(Debug, Clone, Serialize)]
pub struct InitrdReport {
    pub path: PathBuf,
    pub sha256: Sha256Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub built_members: Option<usize>,
}

/// A written disk.
#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    /// Each format written: file, SHA-256, size.
    pub files: Vec<DiskFile>,
    pub kernel: PathBuf,
    /// Where the kernel is in the image, and what put it there, when the recipe took
    /// it from the image (`kernel: { path: /boot/vmlinuz-* }`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_in_image: Option<ImageFile>,
    pub cmdline: PathBuf,
    /// The initrd beside the disk, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd: Option<InitrdReport>,
    /// The dm-verity tree over the root (`root.verity: true`): root hash, salt,
    /// partition UUIDs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verity: Option<verity::Verity>,
    /// `direct` (the hypervisor loads `kernel`) or `uefi` (firmware boots the disk).
    pub boot: &'static str,
    pub root_fs: &'static str,
    pub root_size: u64,
    pub attestations: Option<PathBuf>,
    /// Host tools that wrote it, with versions.
    pub tools: std::collections::BTreeMap<String, String>,
    /// Whether the disk files were replayed from the layer cache (an unchanged
    /// rebuild; see [`crate::warm`]) rather than written.
    pub cached: bool,
    /// The SHA-256 of the certificate whose key signed the unified kernel image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_boot_cert: Option<Sha256Digest>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskFile {
    pub format: &'static str,
    pub path: PathBuf,
    pub sha256: Sha256Digest,
    pub size: u64,
}

impl DiskReport {
    /// How to boot the disk with QEMU, as the build prints it: the kernel and command
    /// line for a direct boot; firmware (OVMF) and the disk alone for `boot: uefi`,
    /// whose kernel and command line are inside the disk.
    pub fn run_hint(&self) -> String {
        if self.boot == BootMode::Uefi.name() {
            let (disk, format) = self
                .files
                .iter()
                .find(|f| f.format == "raw")
                .or(self.files.first())
                .map_or(("DISK".to_string(), "raw"), |f| {
                    (f.path.display().to_string(), f.format)
                });
            format!(
                "boot: firmware boots the disk, no -kernel: cp /usr/share/OVMF/OVMF_VARS.fd vars.fd; qemu-system-x86_64 -m 512 -nographic -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd -drive if=pflash,format=raw,file=vars.fd -drive file={disk},format={format},if=none,id=d -device nvme,drive=d,serial=root"
            )
        } else {
            format!(
                "boot: -kernel {} -append \"$(cat {})\"",
                self.kernel.display(),
                self.cmdline.display()
            )
        }
    }
}

/// The disk files of a build (the disks, the kernel, the initrd) in a temporary
/// directory beside the outputs, before the command line and the signed statements
/// join them: written by [`write`], or replayed from the layer cache.
pub struct StagedDisk {
    pub tmp: tempfile::TempDir,
    /// Every file in `tmp`, named as in the output directory, with its SHA-256.
    pub staged: Vec<StagedFile>,
    /// The disks among them (raw first), as the report gives them.
    pub files: Vec<DiskFile>,
    pub boot: BootIds,
    /// The kernel command line as written (with `roothash=` for a verity root).
    pub cmdline: String,
    pub verity: Option<verity::Verity>,
}

#[derive(Debug, Clone)]
pub struct StagedFile {
    pub name: String,
    pub sha256: Sha256Digest,
}

/// A disk written into a temporary directory beside the outputs, not yet published.
pub struct DiskBuild {
    tmp: tempfile::TempDir,
    /// (file name in `tmp` and in the output directory)
    names: Vec<String>,
    pub report: DiskReport,
}

/// The file names a disk build may publish for image `name`.
pub fn output_names(name: &str) -> Vec<String> {
    [
        "raw",
        "qcow2",
        "vmlinuz",
        "initrd",
        "cmdline",
        "disk.intoto.jsonl",
    ]
    .iter()
    .map(|ext| format!("{name}.{ext}"))
    .collect()
}

/// An empty temporary directory in `out` for the disk files of image `name`, after
/// removing those that builds killed midway left. The caller holds the output's build
/// lock, so a directory of that name is such a leftover.
pub fn staging_dir(out: &Path, name: &str) -> Result<tempfile::TempDir, DiskError> {
    let prefix = format!(".{name}.disk-tmp-");
    for entry in fs::read_dir(out).map_err(DiskError::io(out))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            fs::remove_dir_all(entry.path()).map_err(DiskError::io(&entry.path()))?;
        }
    }
    tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(out)
        .map_err(DiskError::io(out))
}

/// Writes the disks of the image made of `layers` (every layer, the SBOM layer
/// included, in order), its kernel and its initrd into a staging directory.
pub fn write(
    plan: &DiskPlan,
    input: &DiskInput,
    layers: &[LayerTree],
) -> Result<StagedDisk, DiskError> {
    let recipe = input.recipe;
    let vm = &plan.vm;
    let name = &recipe.name;
    let out = input.out_dir;
    let tmp = staging_dir(out, name)?;
    let scratch = tmp.path().join(".scratch");
    fs::create_dir(&scratch).map_err(DiskError::io(&scratch))?;

    let tree = rootfs::merge(layers);
    let boot = BootFiles::find(plan, recipe, &tree, layers, input.epoch)?;
    let tree_digest = tree.digest();
    let ext4_params = || ext4::Ext4Params {
        size: vm.root.size,
        epoch: input.epoch,
        uuid: gpt::Guid::derived(&[b"cairn-ext4-uuid", name.as_bytes(), tree_digest.as_bytes()]),
        hash_seed: gpt::Guid::derived(&[
            b"cairn-ext4-hash-seed",
            name.as_bytes(),
            tree_digest.as_bytes(),
        ]),
        label: ROOT_PARTITION_NAME,
    };
    let size_error = |e: DiskError| match e {
        DiskError::RootTooSmall { .. } => located(
            recipe,
            vm.root.size_span,
            e.to_string(),
            "raise `root.size`, or make the image smaller".into(),
        ),
        DiskError::Unrepresentable { .. } => located(
            recipe,
            vm.span,
            e.to_string(),
            "rename or remove the path in the recipe".into(),
        ),
        e => e,
    };
    let fs_image = match vm.root.fs {
        RootFsType::Ext4 => ext4::write(&tree, &ext4_params(), &scratch),
        RootFsType::Squashfs => {
            squashfs::write(&tree, vm.root.size, input.epoch, &plan.tools, &scratch)
        }
    }
    .map_err(size_error)?;
    let fs_digest = ext4::sha256_file(&fs_image).map_err(DiskError::io(&fs_image))?;
    let verity = if vm.root.verity {
        let hash_image = scratch.join("root.verity");
        let tree = verity::format(&fs_image, verity::salt_for(&fs_digest), &hash_image)?;
        Some((tree, hash_image))
    } else {
        None
    };
    let cmdline = match &verity {
        Some((tree, _)) => format!("{} roothash={}", vm.cmdline, tree.roothash),
        None => vm.cmdline.clone(),
    };

    let root = gpt::Partition {
        type_guid: gpt::LINUX_ROOT_X86_64,
        guid: match &verity {
            // Where systemd looks for the data partition of `roothash=`.
            Some((tree, _)) => tree.data_partition_guid(),
            None => gpt::Guid::derived(&[b"cairn-gpt-root", name.as_bytes(), fs_digest.as_bytes()]),
        },
        offset: 0,
        size: vm.root.size,
        name: ROOT_PARTITION_NAME.into(),
    };
    let mut partitions = Vec::new();
    if let Some(stub) = &boot.stub {
        let mut uki = unified_kernel_image(&cmdline, input, &boot, stub)?;
        if let Some(key) = &plan.secure_boot {
            uki = key.sign(&uki).map_err(|e| DiskError::Tool {
                tool: "Secure Boot signing".into(),
                detail: e.to_string(),
            })?;
        }
        let esp_path = scratch.join("esp.fat");
        let id = Sha256Digest::of(&uki);
        let volume_id = u32::from_be_bytes(id.as_bytes()[..4].try_into().expect("4 bytes"));
        esp::write(&esp_path, esp::size_for(uki.len() as u64), volume_id, &uki)
            .map_err(DiskError::io(&esp_path))?;
        let esp = gpt::Partition {
            type_guid: esp::ESP_TYPE,
            guid: gpt::Guid::derived(&[b"cairn-gpt-esp", name.as_bytes(), id.as_bytes()]),
            offset: 0,
            size: esp::size_for(uki.len() as u64),
            name: ESP_PARTITION_NAME.into(),
        };
        partitions.push((esp, esp_path));
    }
    partitions.push((root, fs_image));
    if let Some((tree, hash_image)) = &verity {
        partitions.push((tree.hash_partition(), hash_image.clone()));
    }
    let mut files = Vec::new();
    let raw_name = format!("{name}.raw");
    let raw_path = tmp.path().join(&raw_name);
    let (raw_sha, raw_size) = write_raw(&raw_path, &mut partitions, name, fs_digest)?;
    fs::remove_dir_all(&scratch).map_err(DiskError::io(&scratch))?;
    let mut staged = Vec::new();
    if vm.formats.contains(&DiskFormat::Qcow2) {
        let qcow2_name = format!("{name}.qcow2");
        let qcow2_path = tmp.path().join(&qcow2_name);
        let (sha256, size) =
            qcow2::convert(&raw_path, &qcow2_path).map_err(DiskError::io(&qcow2_path))?;
        files.push(DiskFile {
            format: "qcow2",
            path: out.join(&qcow2_name),
            sha256,
            size,
        });
        staged.push(StagedFile {
            name: qcow2_name,
            sha256,
        });
    }
    if vm.formats.contains(&DiskFormat::Raw) {
        files.insert(
            0,
            DiskFile {
                format: "raw",
                path: out.join(&raw_name),
                sha256: raw_sha,
                size: raw_size,
            },
        );
        staged.push(StagedFile {
            name: raw_name,
            sha256: raw_sha,
        });
    } else {
        fs::remove_file(&raw_path).map_err(DiskError::io(&raw_path))?;
    }

    let kernel_name = format!("{name}.vmlinuz");
    boot.kernel.copy_to(&tmp.path().join(&kernel_name))?;
    staged.push(StagedFile {
        name: kernel_name,
        sha256: boot.kernel.sha256,
    });
    if let Some(initrd) = &boot.initrd {
        let initrd_name = format!("{name}.initrd");
        initrd.copy_to(&tmp.path().join(&initrd_name))?;
        staged.push(StagedFile {
            name: initrd_name,
            sha256: initrd.sha256,
        });
    }
    Ok(StagedDisk {
        tmp,
        staged,
        files,
        boot: boot.ids(),
        cmdline,
        verity: verity.map(|(tree, _)| tree),
    })
}

/// Adds the command line and, with a key, the signed statements about the disk to the
/// staged files: the disk build, ready to publish. `cached` says where the files came
/// from, for the report.
pub fn finish(
    plan: &DiskPlan,
    input: &DiskInput,
    disk: StagedDisk,
    cached: bool,
) -> Result<DiskBuild, DiskError> {
    let StagedDisk {
        tmp,
        staged,
        files,
        boot,
        cmdline,
        verity,
    } = disk;
    let vm = &plan.vm;
    let name = &input.recipe.name;
    let out = input.out_dir;
    let mut names: Vec<String> = staged.into_iter().map(|f| f.name).collect();
    let kernel_name = format!("{name}.vmlinuz");
    let cmdline_name = format!("{name}.cmdline");
    let cmdline_path = tmp.path().join(&cmdline_name);
    fs::write(&cmdline_path, format!("{cmdline}\n")).map_err(DiskError::io(&cmdline_path))?;
    names.push(cmdline_name.clone());

    let written = attest::Written {
        files: &files,
        cmdline: &cmdline,
        verity: verity.as_ref(),
    };
    let attestations = match input.sign_key {
        Some(key) => {
            let jsonl_name = format!("{name}.disk.intoto.jsonl");
            let path = tmp.path().join(&jsonl_name);
            let file = File::create(&path).map_err(DiskError::io(&path))?;
            let mut jsonl = io::BufWriter::new(file);
            attest::write_signed_statements(plan, &boot, input, &written, key, &mut jsonl)
                .and_then(|()| jsonl.into_inner().map_err(|e| e.into_error()))
                .map_err(DiskError::io(&path))?;
            names.push(jsonl_name.clone());
            Some(out.join(jsonl_name))
        }
        None => None,
    };
    let initrd = boot.initrd.as_ref().map(|i| InitrdReport {
        path: out.join(format!("{name}.initrd")),
        sha256: i.sha256,
        built_members: i.initrd_members.as_ref().map(Vec::len),
    });
    Ok(DiskBuild {
        tmp,
        names,
        report: DiskReport {
            files,
            kernel: out.join(kernel_name),
            kernel_in_image: boot.kernel.in_image,
            cmdline: out.join(cmdline_name),
            initrd,
            verity,
            boot: vm.boot.name(),
            root_fs: vm.root.fs.name(),
            root_size: vm.root.size,
            attestations,
            tools: plan.tools.versions(),
            cached,
            secure_boot_cert: plan.secure_boot.as_ref().map(|k| k.cert_sha256),
        },
    })
}

impl DiskBuild {
    /// Moves each file into the output directory (one atomic rename each) and removes
    /// disk outputs of an earlier build that this one did not produce.
    pub fn publish(self, recipe_name: &str) -> Result<DiskReport, DiskError> {
        let out = self
            .tmp
            .path()
            .parent()
            .expect("the temporary directory is in the output directory")
            .to_path_buf();
        for name in &self.names {
            let from = self.tmp.path().join(name);
            File::open(&from)
                .and_then(|f| f.sync_all())
                .map_err(DiskError::io(&from))?;
            fs::rename(&from, out.join(name)).map_err(DiskError::io(&out.join(name)))?;
        }
        remove_stale(&out, recipe_name, &self.names)?;
        Ok(self.report)
    }
}

/// Removes disk outputs named for `recipe_name` that are not in `keep`.
pub fn remove_stale(out: &Path, recipe_name: &str, keep: &[String]) -> Result<(), DiskError> {
    for name in output_names(recipe_name) {
        if keep.contains(&name) {
            continue;
        }
        let path = out.join(&name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(DiskError::io(&path)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Writes the raw disk: GPT around `partitions` (each with the file holding its
/// content), placed in order from 1 MiB on, each at a whole MiB, with 1 MiB free at the
/// end for the backup table. Zero runs are left as holes (the bytes read as zeros
/// either way); the SHA-256 covers every byte.
fn write_raw(
    path: &Path,
    partitions: &mut [(gpt::Partition, PathBuf)],
    name: &str,
    fs_digest: Sha256Digest,
) -> Result<(Sha256Digest, u64), DiskError> {
    let mut offset = gpt::FIRST_PARTITION_OFFSET;
    for (p, _) in partitions.iter_mut() {
        p.offset = offset;
        offset += p.size.div_ceil(gpt::FIRST_PARTITION_OFFSET) * gpt::FIRST_PARTITION_OFFSET;
    }
    let disk_size = offset + gpt::FIRST_PARTITION_OFFSET;
    let disk_guid = gpt::Guid::derived(&[b"cairn-gpt-disk", name.as_bytes(), fs_digest.as_bytes()]);
    let table_entries: Vec<gpt::Partition> = partitions.iter().map(|(p, _)| p.clone()).collect();
    let table = gpt::table(disk_size, disk_guid, &table_entries);

    let file = File::create_new(path).map_err(DiskError::io(path))?;
    file.set_len(disk_size).map_err(DiskError::io(path))?;
    let mut w = SparseWriter {
        file: &file,
        path,
        hasher: Sha256::new(),
        pos: 0,
    };
    w.put(&table.head)?;
    let mut buf = vec![0u8; 1 << 20];
    for (p, content) in partitions.iter() {
        w.zeros(p.offset - w.pos);
        let mut src = File::open(content).map_err(DiskError::io(content))?;
        let mut left = p.size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = read_full(&mut src, &mut buf[..want]).map_err(DiskError::io(content))?;
            if n == 0 {
                break;
            }
            for chunk in buf[..n].chunks(64 << 10) {
                w.put(chunk)?;
            }
            left -= n as u64;
        }
    }
    w.zeros(disk_size - table.tail.len() as u64 - w.pos);
    w.put(&table.tail)?;
    file.sync_all().map_err(DiskError::io(path))?;
    Ok((Sha256Digest::from_hasher(w.hasher), disk_size))
}

/// The unified kernel image: the stub with `.osrel`, `.cmdline`, `.linux` and
/// `.initrd` sections, each input checked against its pinned digest.
fn unified_kernel_image(
    cmdline: &str,
    input: &DiskInput,
    boot: &BootFiles,
    stub: &BootFile,
) -> Result<Vec<u8>, DiskError> {
    let osrel = format!(
        "ID=cairn\nNAME={0}\nPRETTY_NAME=\"{0} (cairn)\"\nIMAGE_ID={0}\n",
        input.recipe.name
    );
    let cmdline = cmdline.as_bytes();
    let (stub, kernel) = (stub.read()?, boot.kernel.read()?);
    let initrd = boot.initrd.as_ref().map(BootFile::read).transpose()?;
    let mut sections: Vec<(&str, &[u8])> = vec![
        (".osrel", osrel.as_bytes()),
        (".cmdline", cmdline),
        (".linux", &kernel),
    ];
    if let Some(initrd) = &initrd {
        sections.push((".initrd", initrd));
    }
    uki::build(&stub, &sections).map_err(|e| DiskError::Tool {
        tool: "uki".into(),
        detail: e.to_string(),
    })
}

/// Fills `buf` from `r` as far as `r` goes: the bytes read (fewer only at its end).
pub(super) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Hashes every byte in order and writes only chunks that are not all zero.
struct SparseWriter<'a> {
    file: &'a File,
    path: &'a Path,
    hasher: Sha256,
    pos: u64,
}

impl SparseWriter<'_> {
    fn put(&mut self, chunk: &[u8]) -> Result<(), DiskError> {
        self.hasher.update(chunk);
        if chunk.iter().any(|&b| b != 0) {
            self.file
                .write_all_at(chunk, self.pos)
                .map_err(DiskError::io(self.path))?;
        }
        self.pos += chunk.len() as u64;
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        self.pos += n;
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            self.hasher.update(&ZEROS[..k]);
            n -= k as u64;
        }
    }
}

#[cfg(test)]
mod tests;
