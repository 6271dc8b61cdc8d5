//! `vm:` — a bootable disk from the image's root file system: the kernel (and an
//! optional initrd) from pinned sources or from the image's own files (`path:` alone,
//! a pattern such as `/boot/vmlinuz-*`), the kernel command line, the root file system
//! type and size, the boot mode (with the UEFI stub for `uefi`) and the disk formats.

use super::context::{span_of, Cx};
use super::model::{
    BootMode, DiskFormat, InitrdItem, InitrdSpec, RootFsSpec, RootFsType, SecureBootSpec,
    SourceSpec, VmFile, VmFileFrom, VmInitrd, VmSpec,
};
use super::raw::{RawSecureBoot, RawVm, RawVmFile, RawVmInitrd, RawVmRoot, Text};
use super::sources::relative_path;
use super::values::{self, did_you_mean, list, unknown, Invalid};
use super::Diagnostic;
use crate::oci::compression::Compression;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// The smallest root partition cairn writes: below this ext4 has no room for its own
/// metadata and a useful tree.
pub const MIN_ROOT_SIZE: u64 = 16 << 20;
const MIB: u64 = 1 << 20;

const FS_TYPES: [&str; 2] = ["ext4", "squashfs"];
/// Known root file system types this cairn does not write yet: named in the error.
const FS_TYPES_NOT_YET: [&str; 1] = ["erofs"];
const BOOT_MODES: [&str; 2] = ["direct", "uefi"];
const FORMATS: [&str; 2] = ["raw", "qcow2"];

pub(super) fn parse(
    cx: &Cx,
    raw: Option<Spanned<RawVm>>,
    sources: &BTreeMap<String, SourceSpec>,
) -> Result<Option<VmSpec>, Diagnostic> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let at = span_of(&raw);
    let RawVm {
        kernel,
        initrd,
        cmdline,
        root,
        boot,
        stub,
        formats,
        secure_boot,
    } = raw.value;
    let kernel = cx.require(
        kernel,
        at,
        "`vm` has no `kernel`",
        "name the kernel (a bzImage): a file of the image, e.g. `kernel: { path: /boot/vmlinuz-* }` with linux-image-cloud-amd64 in `packages:`, or a source, `kernel: { source: kernel }`",
    )?;
    let kernel = vm_file(cx, "kernel", kernel, sources)?;
    let initrd = initrd.map(|i| vm_initrd(cx, i, sources)).transpose()?;
    let cmdline = cx.require(
        cmdline,
        at,
        "`vm` has no `cmdline`",
        "give the kernel command line, e.g. `cmdline: \"console=ttyS0 root=PARTLABEL=root ro\"`",
    )?;
    cx.check(&cmdline, |c| kernel_cmdline(c))?;
    let root = cx.require(
        root,
        at,
        "`vm` has no `root`",
        "describe the root file system, e.g. `root: { fs: ext4, size: 256M }`",
    )?;
    let root = root_fs(cx, root)?;
    if root.verity {
        cx.check(&cmdline, |c| verity_cmdline(c))?;
    }
    let boot_at = boot.as_ref().map_or(at, span_of);
    let boot = match &boot {
        None => BootMode::Direct,
        Some(boot) => cx.check(boot, |b| match b.as_str() {
            "direct" => Ok(BootMode::Direct),
            "uefi" => Ok(BootMode::Uefi),
            other => Err(unknown("boot mode", other, &BOOT_MODES)),
        })?,
    };
    let stub = match (boot, stub) {
        (BootMode::Uefi, Some(stub)) => Some(vm_file(cx, "stub", stub, sources)?),
        (BootMode::Uefi, None) => {
            return Err(cx.error(boot_at, "`boot: uefi` needs a `stub`").with_hint(
                "name the source holding systemd-stub, e.g. `stub: { source: stub }` with linuxx64.efi.stub from Debian's systemd-boot-efi",
            ));
        }
        (BootMode::Direct, Some(stub)) => {
            return Err(cx
                .error(span_of(&stub), "`stub` is only used with `boot: uefi`")
                .with_hint("remove `stub`, or write `boot: uefi`"));
        }
        (BootMode::Direct, None) => None,
    };
    let secure_boot = match (boot, secure_boot) {
        (_, None) => None,
        (BootMode::Uefi, Some(raw)) => Some(secure_boot_keys(cx, raw)?),
        (BootMode::Direct, Some(raw)) => {
            return Err(cx
                .error(
                    span_of(&raw),
                    "`secure_boot` signs the unified kernel image of `boot: uefi`",
                )
                .with_hint("write `boot: uefi` with a `stub`, or remove `secure_boot`"));
        }
    };
    let formats = match formats {
        None => vec![DiskFormat::Raw],
        Some(list) => {
            if list.value.is_empty() {
                return Err(cx.error(span_of(&list), "`formats` is empty").with_hint(
                    "list at least one disk format: `formats: [raw]` or `[raw, qcow2]`",
                ));
            }
            let mut formats = list
                .value
                .iter()
                .map(|f| {
                    cx.check(f, |f| match f.as_str() {
                        "raw" => Ok(DiskFormat::Raw),
                        "qcow2" => Ok(DiskFormat::Qcow2),
                        other => Err(unknown("disk format", other, &FORMATS)),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            formats.sort_unstable();
            formats.dedup();
            formats
        }
    };
    Ok(Some(VmSpec {
        kernel,
        initrd,
        cmdline: cmdline.value,
        root,
        boot,
        stub,
        formats,
        secure_boot,
        span: at,
    }))
}

/// `initrd:` a file (`source`, `path`), or one built from files of the image
/// (`init`, `files`, `modules`): never both.
fn vm_initrd(
    cx: &Cx,
    raw: Spanned<RawVmInitrd>,
    sources: &BTreeMap<String, SourceSpec>,
) -> Result<VmInitrd, Diagnostic> {
    let at = span_of(&raw);
    let RawVmInitrd {
        source,
        path,
        init,
        files,
        modules,
        compression,
    } = raw.value;
    if init.is_none() && files.is_none() && modules.is_none() && compression.is_none() {
        let file = Spanned {
            value: RawVmFile { source, path },
            referenced: raw.referenced,
            defined: raw.defined,
        };
        return vm_file(cx, "initrd", file, sources).map(VmInitrd::File);
    }
    if let Some(named) = source.as_ref().or(path.as_ref()) {
        return Err(cx
            .error(
                span_of(named),
                "`initrd` either names a file (`source`, `path`) or is built (`init`, `files`, `modules`), not both",
            )
            .with_hint("remove `source` and `path` to have cairn build the initrd from files of the image, or remove `init`, `files`, `modules` and `compression` to use a prebuilt one"));
    }
    let init = cx.require(
        init,
        at,
        "the initrd to build has no `init`",
        "name the file of the image the kernel runs first, e.g. `init: /usr/lib/initrd/init` (a script a layer writes)",
    )?;
    let path_item = |text: Text| {
        cx.check(&text, |p| image_pattern("initrd file", p))?;
        if text.value.contains(['*', '?', '[']) {
            return Err(cx
                .error(span_of(&text), format!("`{}` has wildcards", text.value))
                .with_hint("name each file of the initrd by its exact path in the image"));
        }
        Ok(InitrdItem {
            span: span_of(&text),
            name: text.value,
        })
    };
    let init = path_item(init)?;
    let files = files
        .map(|list| list.value.into_iter().map(path_item).collect())
        .transpose()?
        .unwrap_or_default();
    let modules = modules
        .map(|list| {
            list.value
                .into_iter()
                .map(|m| {
                    cx.check(&m, |name| module_name(name))?;
                    Ok(InitrdItem {
                        span: span_of(&m),
                        name: m.value,
                    })
                })
                .collect::<Result<Vec<_>, Diagnostic>>()
        })
        .transpose()?
        .unwrap_or_default();
    let compression = compression
        .map(|c| cx.check(&c, |c| values::compression(c)))
        .transpose()?
        .unwrap_or(Compression::None);
    Ok(VmInitrd::Built(InitrdSpec {
        init,
        files,
        modules,
        compression,
        span: at,
    }))
}

/// A kernel module's name as `modprobe` takes it: `dm-verity`, `virtio_blk`.
fn module_name(name: &str) -> Result<(), Invalid> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        return Ok(());
    }
    Err(Invalid::new(format!("`{name}` is not a kernel module name"))
        .with_hint("write the module's name as modprobe takes it, without a path or `.ko`, e.g. `dm-verity`"))
}

fn secure_boot_keys(cx: &Cx, raw: Spanned<RawSecureBoot>) -> Result<SecureBootSpec, Diagnostic> {
    let at = span_of(&raw);
    let RawSecureBoot { key, cert } = raw.value;
    let hint = "write `secure_boot: { key: <RSA private key>, cert: <its X.509 certificate> }`, both PEM files relative to the recipe file, e.g. `{ key: keys/db.key, cert: keys/db.crt }`";
    let key = cx.require(key, at, "`secure_boot` has no `key`", hint)?;
    let cert = cx.require(cert, at, "`secure_boot` has no `cert`", hint)?;
    cx.check(&key, |k| relative_path("key path", k, "keys/db.key"))?;
    cx.check(&cert, |c| {
        relative_path("certificate path", c, "keys/db.crt")
    })?;
    Ok(SecureBootSpec {
        key: key.value,
        cert: cert.value,
        span: at,
    })
}

fn vm_file(
    cx: &Cx,
    what: &str,
    raw: Spanned<RawVmFile>,
    sources: &BTreeMap<String, SourceSpec>,
) -> Result<VmFile, Diagnostic> {
    let at = span_of(&raw);
    let RawVmFile { source, path } = raw.value;
    let Some(source) = source else {
        let path = cx.require(
            path,
            at,
            format!("`{what}` names no `source` and no `path`"),
            format!("write `{what}: {{ path: /boot/... }}` for a file of the image, or `{what}: {{ source: <source name> }}`"),
        )?;
        cx.check(&path, |p| image_pattern(what, p))?;
        return Ok(VmFile {
            from: VmFileFrom::Image {
                pattern: path.value,
            },
            span: at,
        });
    };
    cx.check(&source, |name| {
        if sources.contains_key(name) {
            return Ok(());
        }
        let known = list(sources.keys().map(String::as_str));
        let invalid = Invalid::new(format!("`{what}` names unknown source `{name}`"));
        Err(
            match did_you_mean(name, sources.keys().map(String::as_str)) {
                Some(close) => invalid.with_hint(format!("did you mean `{close}`?")),
                None if sources.is_empty() => {
                    invalid.with_hint(format!("define the {what} under `sources:` first, or take it from the image: `{what}: {{ path: /boot/... }}`"))
                }
                None => invalid.with_hint(format!("defined sources: {known}")),
            },
        )
    })?;
    let path = path
        .map(|p| {
            cx.check(&p, |p| member_path(p))?;
            Ok::<_, Diagnostic>(p.value.trim_matches('/').to_string())
        })
        .transpose()?;
    Ok(VmFile {
        from: VmFileFrom::Source {
            name: source.value,
            path,
        },
        span: at,
    })
}

/// A file of the image: an absolute path whose components may hold wildcards.
fn image_pattern(what: &str, p: &str) -> Result<(), Invalid> {
    let hint = format!(
        "write the absolute path of the {what} in the image, e.g. `/boot/vmlinuz-*`, or name a source with `source:`"
    );
    let Some(rest) = p.strip_prefix('/') else {
        return Err(Invalid::new(format!("`{p}` is not an absolute path")).with_hint(hint));
    };
    if rest.is_empty()
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Invalid::new(format!("`{p}` is not a file path")).with_hint(hint));
    }
    Ok(())
}

/// A member of a directory or archive source, relative to its top (`boot/vmlinuz`).
fn member_path(p: &str) -> Result<(), Invalid> {
    let trimmed = p.trim_matches('/');
    if trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Invalid::new(format!("`{p}` is not a member path"))
            .with_hint("write the path of the file inside the source, e.g. `boot/vmlinuz-6.1.0-28-cloud-amd64`"));
    }
    Ok(())
}

fn kernel_cmdline(c: &str) -> Result<(), Invalid> {
    // The x86 boot protocol's limit for modern kernels is 2048 bytes including NUL.
    if c.len() > 2047 || c.contains(['\n', '\0']) {
        return Err(
            Invalid::new("the kernel command line must be one line of at most 2047 bytes")
                .with_hint(
                    "remove line breaks; put long configuration in the root file system instead",
                ),
        );
    }
    Ok(())
}

/// With `root.verity: true` the kernel must mount the verified device, read-only, and
/// the root hash is cairn's to add: `root=` may only name `/dev/mapper/root` (where
/// systemd's veritysetup generator opens it; without `root=` its fstab generator picks
/// that device too), and `rw` and `roothash=` are refused.
fn verity_cmdline(c: &str) -> Result<(), Invalid> {
    for word in c.split_ascii_whitespace() {
        if let Some(root) = word.strip_prefix("root=") {
            if root != "/dev/mapper/root" {
                return Err(Invalid::new(format!(
                    "`{word}` would mount the root partition without dm-verity (`root.verity: true`)"
                ))
                .with_hint("remove `root=` (systemd then mounts /dev/mapper/root, the verified device) or write `root=/dev/mapper/root`"));
            }
        } else if word == "rw" {
            return Err(
                Invalid::new("`rw`: a dm-verity root (`root.verity: true`) is read-only")
                    .with_hint("remove `rw`; keep writable state on another file system"),
            );
        } else if word.starts_with("roothash=") {
            return Err(Invalid::new(format!(
                "`{word}`: cairn adds the root hash it computes (`root.verity: true`)"
            ))
            .with_hint("remove `roothash=` from `cmdline`"));
        }
    }
    Ok(())
}

fn root_fs(cx: &Cx, raw: Spanned<RawVmRoot>) -> Result<RootFsSpec, Diagnostic> {
    let at = span_of(&raw);
    let RawVmRoot { fs, size, verity } = raw.value;
    let fs = cx.require(
        fs,
        at,
        "`root` has no `fs`",
        "give the root file system type: `fs: ext4`",
    )?;
    let fs = cx.check(&fs, |f| match f.as_str() {
        "ext4" => Ok(RootFsType::Ext4),
        "squashfs" => Ok(RootFsType::Squashfs),
        other if FS_TYPES_NOT_YET.contains(&other) => Err(Invalid::new(format!(
            "root file system `{other}` is not supported by this cairn yet"
        ))
        .with_hint("use `fs: ext4`, or `fs: squashfs` for a read-only root")),
        other => Err(unknown("root file system type", other, &FS_TYPES)),
    })?;
    let size_text = cx.require(
        size,
        at,
        "`root` has no `size`",
        "give the root partition size, e.g. `size: 256M`",
    )?;
    let size = cx.check(&size_text, |s| disk_size(s))?;
    Ok(RootFsSpec {
        fs,
        size,
        size_span: span_of(&size_text),
        verity: verity.is_some_and(|v| v.value),
    })
}

/// `256M`, `1G`, `65536K`: binary units; a whole number of MiB, at least
/// [`MIN_ROOT_SIZE`].
fn disk_size(s: &str) -> Result<u64, Invalid> {
    let hint = "write a size in MiB or GiB, e.g. `256M` or `1G`";
    let bytes = values::byte_size(s, hint)?;
    if bytes % MIB != 0 {
        return Err(
            Invalid::new(format!("size `{s}` is not a whole number of MiB")).with_hint(hint),
        );
    }
    if bytes < MIN_ROOT_SIZE {
        return Err(Invalid::new(format!(
            "size `{s}` is too small: the root file system needs at least {}M",
            MIN_ROOT_SIZE / MIB
        ))
        .with_hint(hint));
    }
    if bytes > 1 << 44 {
        return Err(Invalid::new(format!("size `{s}` is larger than 16 TiB")).with_hint(hint));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_units_in_whole_mib() {
        assert_eq!(disk_size("256M"), Ok(256 << 20));
        assert_eq!(disk_size("1G"), Ok(1 << 30));
        assert_eq!(disk_size("32768K"), Ok(32 << 20));
        assert_eq!(disk_size("33554432"), Ok(32 << 20));
        assert!(disk_size("1.5G").is_err());
        assert!(disk_size("1000K").is_err());
        assert!(disk_size("8M").unwrap_err().message.contains("too small"));
        assert!(disk_size("M").is_err());
    }

    #[test]
    fn a_verity_root_refuses_a_command_line_that_bypasses_it() {
        assert!(verity_cmdline("console=ttyS0 ro").is_ok());
        assert!(verity_cmdline("console=ttyS0 root=/dev/mapper/root").is_ok());
        for bad in [
            "root=PARTLABEL=root",
            "root=/dev/nvme0n1p1 ro",
            "console=ttyS0 rw",
            "roothash=00",
        ] {
            assert!(verity_cmdline(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_names_suggest_the_closest() {
        assert_eq!(
            unknown("disk format", "qcow", &FORMATS).hint.as_deref(),
            Some("did you mean `qcow2`?")
        );
    }

    #[test]
    fn image_paths_are_absolute_and_normal() {
        assert!(image_pattern("kernel", "/boot/vmlinuz-*").is_ok());
        assert!(image_pattern("kernel", "boot/vmlinuz").is_err());
        assert!(image_pattern("kernel", "/boot/../vmlinuz").is_err());
        assert!(image_pattern("kernel", "/boot//vmlinuz").is_err());
        assert!(image_pattern("kernel", "/").is_err());
    }

    #[test]
    fn member_paths_stay_inside_their_source() {
        assert!(member_path("boot/vmlinuz").is_ok());
        assert!(member_path("/boot/vmlinuz").is_ok());
        assert!(member_path("../vmlinuz").is_err());
        assert!(member_path("/").is_err());
    }
}
