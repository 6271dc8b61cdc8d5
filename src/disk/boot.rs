//! The files that boot a disk: the kernel, the optional initrd and, for `boot: uefi`,
//! the stub. Each is a pinned source's file (found by [`super::plan`], before anything
//! is built) or a file of the image's own root file system (`path:` without
//! `source:`, e.g. `/boot/vmlinuz-*` from `linux-image-cloud-amd64`), found in the
//! merged tree by [`BootFiles::find`] once the layers exist. A pattern must match
//! exactly one regular file; the file keeps the origin its layer recorded (the
//! package that shipped it), which the disk's provenance and build report name.

use super::initrd::{self, InitrdMember};
use super::rootfs::{self, RootKind, RootTree};
use super::{located, DiskError, DiskPlan};
use crate::debian::fnmatch;
use crate::digest::{HashingWriter, Sha256Digest};
use crate::layers::{FileData, LayerTree};
use crate::recipe::{Recipe, VmFile, VmFileFrom, VmInitrd};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// One boot file: its bytes and, for a file of the image, where it is there.
#[derive(Debug, Clone)]
pub struct BootFile {
    pub data: FileData,
    pub sha256: Sha256Digest,
    pub in_image: Option<ImageFile>,
    /// For an initrd cairn built (`initrd: { init, files, modules }`), what it holds.
    pub initrd_members: Option<Vec<InitrdMember>>,
}

/// Where a boot file taken from the image is, and what put it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// Its absolute path in the image (`/boot/vmlinuz-6.1.0-28-cloud-amd64`).
    pub path: String,
    /// The source its layer took it from (`deb:linux-image-6.1.0-28-cloud-amd64`), or
    /// how the recipe made it (`recipe line 12`).
    pub from: String,
}

/// Every boot file of a disk, found.
#[derive(Debug)]
pub struct BootFiles {
    pub kernel: BootFile,
    pub initrd: Option<BootFile>,
    pub stub: Option<BootFile>,
}

/// What the disk's provenance and report say about a boot file: its SHA-256 and, for a
/// file of the image, where it is there. Kept with a disk in the layer cache, so that a
/// replayed disk is described as the build that wrote it described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootId {
    pub sha256: Sha256Digest,
    pub in_image: Option<ImageFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_members: Option<Vec<InitrdMember>>,
}

/// The [`BootId`] of every boot file of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootIds {
    pub kernel: BootId,
    pub initrd: Option<BootId>,
    pub stub: Option<BootId>,
}

impl BootFile {
    pub fn id(&self) -> BootId {
        BootId {
            sha256: self.sha256,
            in_image: self.in_image.clone(),
            initrd_members: self.initrd_members.clone(),
        }
    }
}

impl BootFiles {
    pub fn ids(&self) -> BootIds {
        BootIds {
            kernel: self.kernel.id(),
            initrd: self.initrd.as_ref().map(BootFile::id),
            stub: self.stub.as_ref().map(BootFile::id),
        }
    }
}

impl BootFile {
    /// A pinned source's file.
    pub fn pinned(content: crate::snapshot::Content) -> BootFile {
        BootFile::pinned_data(FileData::Source(content.clone()), content.sha256)
    }

    /// A file's data with the SHA-256 it was pinned or merged with.
    pub fn pinned_data(data: FileData, sha256: Sha256Digest) -> BootFile {
        BootFile {
            sha256,
            data,
            in_image: None,
            initrd_members: None,
        }
    }

    /// What error messages call it: the host file of a source, or the image path.
    pub fn describe(&self) -> String {
        match (&self.in_image, &self.data) {
            (Some(file), _) => format!("{} in the image", file.path),
            (None, FileData::Source(c)) => c.path().display().to_string(),
            (None, FileData::Inline(_)) if self.initrd_members.is_some() => {
                "the initrd built from the image".into()
            }
            (None, FileData::Inline(_)) => "an inline file".into(),
        }
    }

    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match &self.data {
            FileData::Source(c) => Box::new(File::open(c.path())?),
            FileData::Inline(bytes) => Box::new(&bytes[..]),
        })
    }

    /// The first `n` bytes (fewer if the file is shorter).
    pub fn head(&self, n: usize) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(n);
        self.open()?.take(n as u64).read_to_end(&mut head)?;
        Ok(head)
    }

    /// All its bytes, checked against the digest it was pinned or merged with.
    pub fn read(&self) -> Result<Vec<u8>, DiskError> {
        rootfs::read_checked(&self.data, self.sha256)
    }

    /// Copies it to `dest`, checking the digest on the way.
    pub fn copy_to(&self, dest: &Path) -> Result<(), DiskError> {
        let mut out = HashingWriter::new(File::create(dest).map_err(DiskError::io(dest))?);
        let mut src = self.open().map_err(|e| self.io_error(e))?;
        io::copy(&mut src, &mut out).map_err(|e| self.io_error(e))?;
        out.flush().map_err(DiskError::io(dest))?;
        self.check(out.finish().0)
    }

    fn check(&self, found: Sha256Digest) -> Result<(), DiskError> {
        match &self.data {
            FileData::Source(c) if found != self.sha256 => Err(DiskError::SourceChanged {
                path: c.path().into_owned(),
                expected: self.sha256,
                found,
            }),
            _ => Ok(()),
        }
    }

    fn io_error(&self, source: io::Error) -> DiskError {
        DiskError::Io {
            path: match &self.data {
                FileData::Source(c) => c.path().into_owned(),
                FileData::Inline(_) => self.describe().into(),
            },
            source,
        }
    }
}

impl BootFiles {
    /// The plan's pinned files, and those the recipe takes from the image found in
    /// `tree` (the merged `layers`) and checked as the plan checks pinned ones.
    pub fn find(
        plan: &DiskPlan,
        recipe: &Recipe,
        tree: &RootTree,
        layers: &[LayerTree],
        epoch: u64,
    ) -> Result<BootFiles, DiskError> {
        let vm = &plan.vm;
        let find = |file: &VmFile, what: &str| match &file.from {
            VmFileFrom::Image { pattern } => in_image(recipe, tree, layers, file, pattern, what),
            VmFileFrom::Source { .. } => unreachable!("the plan pinned every source file"),
        };
        let kernel = match &plan.kernel {
            Some(pinned) => pinned.clone(),
            None => {
                let kernel = find(&vm.kernel, "kernel")?;
                super::check_kernel(recipe, &vm.kernel, &kernel)?;
                kernel
            }
        };
        let initrd = match (&plan.initrd, &vm.initrd) {
            (Some(pinned), _) => Some(pinned.clone()),
            (None, Some(VmInitrd::File(file))) => Some(find(file, "initrd")?),
            (None, Some(VmInitrd::Built(spec))) => {
                let built = initrd::build(recipe, spec, tree, layers, epoch)?;
                Some(BootFile {
                    initrd_members: Some(built.members),
                    ..BootFile::pinned_data(FileData::Inline(built.bytes), built.sha256)
                })
            }
            (None, None) => None,
        };
        let stub = match (&plan.stub, &vm.stub) {
            (Some(pinned), _) => Some(pinned.clone()),
            (None, Some(file)) => {
                let stub = find(file, "stub")?;
                super::check_stub(recipe, file, &stub)?;
                Some(stub)
            }
            (None, None) => None,
        };
        Ok(BootFiles {
            kernel,
            initrd,
            stub,
        })
    }
}

/// The one regular file of `tree` whose absolute path matches `pattern`.
fn in_image(
    recipe: &Recipe,
    tree: &RootTree,
    layers: &[LayerTree],
    file: &VmFile,
    pattern: &str,
    what: &str,
) -> Result<BootFile, DiskError> {
    let matches: Vec<&String> = tree
        .entries
        .iter()
        .filter(|(key, e)| {
            e.kind != RootKind::Dir && fnmatch(pattern.as_bytes(), format!("/{key}").as_bytes())
        })
        .map(|(key, _)| key)
        .collect();
    let fail = |message: String, hint: String| Err(located(recipe, file.span, message, hint));
    let key = match matches.as_slice() {
        [] => {
            return fail(
                format!("no file of the image matches the {what} path `{pattern}`"),
                format!(
                    "install the package that ships the {what} (e.g. linux-image-cloud-amd64 in `packages:` for /boot/vmlinuz-*), or correct the path"
                ),
            )
        }
        [one] => *one,
        many => {
            let mut named: Vec<String> = many.iter().take(10).map(|k| format!("/{k}")).collect();
            if many.len() > named.len() {
                named.push(format!("and {} more", many.len() - named.len()));
            }
            return fail(
                format!(
                    "{} files of the image match the {what} path `{pattern}`: {}",
                    many.len(),
                    named.join(", ")
                ),
                format!("write a path that matches exactly one of them, e.g. `/{}`", many[0]),
            )
        }
    };
    let (data, sha256) = match &tree.entries[key].kind {
        RootKind::File { data, sha256 } => (data, sha256),
        RootKind::Hardlink { target } => match &tree.entries[target].kind {
            RootKind::File { data, sha256 } => (data, sha256),
            _ => unreachable!("a merged hard link names a file"),
        },
        RootKind::Symlink { target } => {
            return fail(
                format!("the {what} path `{pattern}` matches /{key}, a symbolic link to {target}"),
                format!("write the path of the file the link points to as the {what} path"),
            )
        }
        RootKind::Dir => unreachable!("directories were not matched"),
    };
    Ok(BootFile {
        in_image: Some(ImageFile {
            path: format!("/{key}"),
            from: rootfs::origin_of(layers, key),
        }),
        ..BootFile::pinned_data(data.clone(), *sha256)
    })
}
