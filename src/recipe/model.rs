//! The validated recipe: what to build, with every value checked and every place an
//! error may later be reported carrying its source span. Nothing after the parser sees
//! YAML; later stages take these types.

use crate::digest::Sha256Digest;
use crate::oci::compression::Compression;
use crate::snapshot::limits::Limits;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A position in the recipe file (1-based line and column, as an editor shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: u32,
    pub column: u32,
}

/// The recipe file itself, kept so that any stage can render a diagnostic with a snippet.
#[derive(Debug, Clone)]
pub struct RecipeFile {
    /// The path as the user gave it (shown in diagnostics).
    pub path: PathBuf,
    /// The directory that source paths are relative to.
    pub dir: PathBuf,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Recipe {
    pub file: RecipeFile,
    pub name: String,
    /// `epoch:` from the recipe; the build falls back to SOURCE_DATE_EPOCH, then 0.
    pub epoch: Option<u64>,
    /// The platform of a single-platform recipe; the first of `platforms:` otherwise.
    pub platform: Platform,
    /// Every platform to build, in the order written: `[platform]` unless the recipe
    /// has `platforms:`.
    pub platforms: Vec<Platform>,
    /// Whether the recipe has `platforms:`: the output is then an image index over one
    /// image per platform (even for a list of one).
    pub multi_platform: bool,
    /// The image the recipe builds on, if any.
    pub base: Option<BaseSpec>,
    /// Keyed by source name; sorted so iteration order never depends on the YAML.
    pub sources: BTreeMap<String, SourceSpec>,
    pub layers: Vec<LayerSpec>,
    pub accounts: Option<Accounts>,
    pub config: ConfigSpec,
    pub annotations: BTreeMap<String, String>,
    /// Whether to embed SBOMs in the image (`sbom: false` turns it off).
    pub sbom: bool,
    /// `compression:` for every layer that does not set its own (default gzip).
    pub compression: Compression,
    /// `vm:`: also build a bootable disk from the image's root file system.
    pub vm: Option<VmSpec>,
    /// Debian packages to install (`repositories:`, `packages:`, `layering:`), in
    /// layers below the recipe's own.
    pub packages: Option<PackagesSpec>,
    /// `limits:`: how much each archive source, and the base image, may hold.
    pub limits: Limits,
}

/// `repositories:` + `packages:` + `layering:`: Debian packages from signed apt
/// repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagesSpec {
    /// Keyed by repository name.
    pub repositories: BTreeMap<String, RepositorySpec>,
    /// The packages asked for, in recipe order (their dependencies come along).
    pub requested: Vec<PackageRequest>,
    /// At most this many package layers (`layering: { max_layers: N }`).
    pub max_layers: u32,
    /// `path_filters:`, in recipe order: which package files to leave out, as dpkg's
    /// `--path-exclude` and `--path-include` do.
    pub path_filters: Vec<PathFilter>,
    /// `extra_ca_certificates:`, in recipe order: CA certificates to trust besides the
    /// packages' own, each a single-file source, installed as
    /// `/usr/local/share/ca-certificates/<source>.crt` (needs `ca-certificates`).
    pub extra_ca_certificates: Vec<ExtraCaCertificate>,
    /// `dpkg_database:`: which dpkg metadata the packages leave in the image.
    pub dpkg_database: DpkgDatabase,
    /// Where `packages:` is written.
    pub span: Span,
}

/// `dpkg_database:`: the dpkg metadata written for the installed packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpkgDatabase {
    /// `distroless` (the default): `/var/lib/dpkg/status.d/<name>` and
    /// `<name>.md5sums` per package, as distroless images carry them for scanners.
    #[default]
    Distroless,
    /// `full`: what dpkg itself keeps (`/var/lib/dpkg/status`, `info/<name>.list`,
    /// `.md5sums`, `.conffiles`, the maintainer scripts), so that dpkg and apt work in
    /// the image.
    Full,
}

/// One of `extra_ca_certificates:`: a source holding one PEM certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraCaCertificate {
    pub source: String,
    pub span: Span,
}

/// A dpkg path filter: a glob over absolute paths (`/usr/share/doc/*`), matched as
/// `fnmatch(3)` without flags, so `*` also matches `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFilter {
    /// `include:` (brings back what an earlier `exclude:` left out), else `exclude:`.
    pub include: bool,
    pub glob: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySpec {
    pub name: String,
    pub mirror: Mirror,
    pub suite: String,
    pub components: Vec<String>,
    /// OpenPGP keyring that must have signed the repository's InRelease: absolute,
    /// or relative to the recipe file.
    pub keyring: String,
    pub span: Span,
}

/// Where a repository is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mirror {
    /// `mirror: host`: the mirror URL the host's apt configuration uses, so recipes
    /// carry no host name.
    Host,
    /// An `http://` or `https://` URL of the archive root (with `dists/` below it).
    Url(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRequest {
    pub name: String,
    pub span: Span,
}

/// `vm:` — what disk to build from the image's final root file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// A bzImage, given to the hypervisor (`boot: direct`).
    pub kernel: VmFile,
    pub initrd: Option<VmInitrd>,
    /// The kernel command line, written beside the disk.
    pub cmdline: String,
    pub root: RootFsSpec,
    pub boot: BootMode,
    /// The UEFI stub a unified kernel image is built on (`boot: uefi` only).
    pub stub: Option<VmFile>,
    /// Disk formats to write, sorted and de-duplicated.
    pub formats: Vec<DiskFormat>,
    /// Signs the unified kernel image for Secure Boot (`boot: uefi` only).
    pub secure_boot: Option<SecureBootSpec>,
    pub span: Span,
}

/// `secure_boot: { key: keys/db.key, cert: keys/db.crt }`: the RSA private key (PEM)
/// and its X.509 certificate, both relative to the recipe file. Read when the build
/// starts, never copied into the image or an attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureBootSpec {
    pub key: String,
    pub cert: String,
    pub span: Span,
}

/// `vm.initrd`: a file, or an initramfs cairn builds from files of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmInitrd {
    File(VmFile),
    Built(InitrdSpec),
}

/// `initrd: { init, files, modules }`: an initramfs (a `newc` cpio) made of files of
/// the image's root file system: `init` as `/init`, each of `files` at its own path
/// with the shared libraries it loads, and each of `modules` (of the image's kernel)
/// with the modules it depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitrdSpec {
    /// The absolute path, in the image, of the program the kernel runs first.
    pub init: InitrdItem,
    /// Absolute paths of files of the image.
    pub files: Vec<InitrdItem>,
    /// Kernel module names (`dm-verity`; `-` and `_` alike).
    pub modules: Vec<InitrdItem>,
    /// How the archive is compressed (none by default): one gzip member or one zstd
    /// frame, as the kernel unpacks an initramfs.
    pub compression: Compression,
    pub span: Span,
}

/// One path or module name of an [`InitrdSpec`], with where the recipe wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitrdItem {
    pub name: String,
    pub span: Span,
}

/// A file the VM needs (kernel, initrd, stub) and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFile {
    pub from: VmFileFrom,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmFileFrom {
    /// A source: the source itself (a file source), or the member `path` of a
    /// directory or archive source.
    Source { name: String, path: Option<String> },
    /// The one regular file of the image's root file system whose absolute path
    /// matches `pattern` (`fnmatch(3)` wildcards, e.g. `/boot/vmlinuz-*`): a kernel a
    /// package of the image ships.
    Image { pattern: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFsSpec {
    pub fs: RootFsType,
    /// Size of the root partition in bytes (a whole number of MiB).
    pub size: u64,
    pub size_span: Span,
    /// `verity: true`: a dm-verity hash partition protects the root, which is then
    /// read-only, and the root hash goes on the kernel command line.
    pub verity: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFsType {
    Ext4,
    /// Read-only, compressed; Debian's kernels have it as a module, so booting needs
    /// an initrd that loads it.
    Squashfs,
}

impl RootFsType {
    pub fn name(self) -> &'static str {
        match self {
            RootFsType::Ext4 => "ext4",
            RootFsType::Squashfs => "squashfs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// The hypervisor loads the kernel (`-kernel`); the disk holds only the root.
    Direct,
    /// Firmware boots a unified kernel image from an EFI system partition.
    Uefi,
}

impl BootMode {
    /// As the recipe writes it (`boot: uefi`).
    pub fn name(self) -> &'static str {
        match self {
            BootMode::Direct => "direct",
            BootMode::Uefi => "uefi",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    /// The file extension (and the name in the recipe).
    pub fn extension(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

impl Recipe {
    /// The compression of the layer named `layer`: its own `compression:`, else the
    /// recipe's. Generated layers (accounts, SBOM) take the recipe's.
    pub fn layer_compression(&self, layer: &str) -> Compression {
        self.layers
            .iter()
            .find(|spec| spec.name == layer)
            .and_then(|spec| spec.compression)
            .unwrap_or(self.compression)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    /// `os/arch` or `os/arch/variant`, as written in a recipe.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The placeholder in a source path that each platform fills with its architecture.
pub const ARCH_PLACEHOLDER: &str = "{arch}";

/// `base:` — the image the recipe's layers go on top of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseSpec {
    pub source: BaseSource,
    /// The pin: the digest of the manifest or index, from `digest:` or the `@sha256:`
    /// of a `ref:` (the lock file may pin it otherwise).
    pub digest: Option<Sha256Digest>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseSource {
    /// An OCI image layout directory, relative to the recipe file.
    Layout { path: String },
    /// An image in a registry.
    Registry(ImageRef),
}

impl BaseSource {
    /// How the base is named in the lock file, errors and attestations:
    /// `layout:<path>` or `<registry>/<repository>[:<tag>]` (never a digest).
    pub fn reference(&self) -> String {
        match self {
            BaseSource::Layout { path } => format!("layout:{path}"),
            BaseSource::Registry(r) => r.to_string(),
        }
    }
}

/// `REGISTRY/REPOSITORY[:TAG]` without a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Host with an optional port (`registry.example`, `127.0.0.1:5000`).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub name: String,
    pub kind: SourceKind,
    /// Relative to `RecipeFile::dir`, as written in the recipe.
    pub path: String,
    /// Pin from the recipe itself, if any (the lock file may pin it otherwise).
    pub sha256: Option<Sha256Digest>,
    /// SPDX license expression, recorded in the SBOM.
    pub license: Option<String>,
    /// A detached signature that must verify before the source is used.
    pub signature: Option<SignatureSpec>,
    pub span: Span,
}

/// `signature: { path: x.sig, key: keys/upstream.pub }`, both relative to the recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureSpec {
    pub path: String,
    pub key: String,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `path:` a regular file or a directory (decided when the source is read).
    Path,
    /// `archive:` a tar, optionally gzip/zstd/xz-compressed (decided by magic bytes).
    Archive,
}

#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub name: String,
    pub contents: Vec<Op>,
    /// `compression:` of this layer, if it sets one.
    pub compression: Option<Compression>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Op {
    pub kind: OpKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Unpack an archive source below `to`.
    Extract {
        source: String,
        to: ImagePath,
        /// Overrides the archive's own uid/gid for every member.
        owner: Option<Owner>,
    },
    /// Copy a file source to `to` (or into `to` if written with a trailing `/`), or a
    /// directory source's contents below `to`.
    Copy {
        source: String,
        to: ImagePath,
        into_dir: bool,
        mode: Option<Mode>,
        owner: Option<Owner>,
    },
    Dir {
        path: ImagePath,
        mode: Option<Mode>,
        owner: Option<Owner>,
    },
    File {
        path: ImagePath,
        content: String,
        mode: Option<Mode>,
        owner: Option<Owner>,
    },
    Symlink {
        path: ImagePath,
        target: String,
        owner: Option<Owner>,
    },
    /// Delete a path from earlier layers (an OCI whiteout).
    Remove { path: ImagePath },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

/// Permission bits, including setuid/setgid/sticky (at most 0o7777).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

/// An absolute path inside the image, normalised: starts with `/`, no `.` or `..`
/// components, no empty components, no trailing `/` (except the root itself).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImagePath(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImagePathError {
    #[error("must be absolute (start with `/`)")]
    NotAbsolute,
    #[error("must not contain `..`: paths cannot leave the image root")]
    ParentComponent,
    #[error("must not contain a NUL byte")]
    Nul,
}

impl ImagePath {
    pub fn root() -> Self {
        ImagePath("/".to_string())
    }

    /// Parses and normalises (`//` and `.` components are dropped; `..` is refused).
    pub fn parse(s: &str) -> Result<Self, ImagePathError> {
        if s.contains('\0') {
            return Err(ImagePathError::Nul);
        }
        if !s.starts_with('/') {
            return Err(ImagePathError::NotAbsolute);
        }
        let mut out = String::with_capacity(s.len());
        for component in s.split('/') {
            match component {
                "" | "." => {}
                ".." => return Err(ImagePathError::ParentComponent),
                c => {
                    out.push('/');
                    out.push_str(c);
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(ImagePath(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The path relative to the root, as written in a tar member name (`usr/bin/x`;
    /// empty for the root).
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    /// `self` joined with a relative, already-normalised path (`a/b`, or empty for self).
    pub fn join(&self, relative: &str) -> ImagePath {
        if relative.is_empty() {
            self.clone()
        } else if self.is_root() {
            ImagePath(format!("/{relative}"))
        } else {
            ImagePath(format!("{}/{relative}", self.0))
        }
    }

    pub fn parent(&self) -> Option<ImagePath> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/').unwrap_or(0);
        Some(if cut == 0 {
            ImagePath::root()
        } else {
            ImagePath(self.0[..cut].to_string())
        })
    }

    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.0.rsplit('/').next()
        }
    }
}

impl std::fmt::Display for ImagePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub groups: Vec<Group>,
    pub users: Vec<User>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: ImagePath,
    pub shell: String,
    pub gecos: String,
}

/// The OCI image config fields a recipe sets. Maps are sorted; `user` is already
/// resolved to numeric `uid[:gid]` form (names are looked up in `accounts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSpec {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<ConfigUser>,
    pub labels: BTreeMap<String, String>,
    /// `port/proto`, sorted and de-duplicated.
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
}

/// `config.user` as the image config will carry it: numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigUser {
    /// `uid` or `uid:gid`, as written or from the recipe's `accounts:`.
    Ids(String),
    /// A name the recipe's `accounts:` does not define, on a recipe with packages or a
    /// base image: looked up in the image's `/etc/passwd` once it is known
    /// ([`crate::layers::image_user`]).
    Named { name: String, span: Span },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_normalise_and_refuse_escapes() {
        assert_eq!(
            ImagePath::parse("/usr//bin/./x/").unwrap().as_str(),
            "/usr/bin/x"
        );
        assert_eq!(ImagePath::parse("/").unwrap().relative(), "");
        assert_eq!(
            ImagePath::parse("/a/../b"),
            Err(ImagePathError::ParentComponent)
        );
        assert_eq!(ImagePath::parse("a/b"), Err(ImagePathError::NotAbsolute));
    }

    #[test]
    fn image_path_parent_and_join() {
        let p = ImagePath::parse("/usr/bin").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "/usr");
        assert_eq!(p.parent().unwrap().parent().unwrap(), ImagePath::root());
        assert_eq!(ImagePath::root().join("etc/motd").as_str(), "/etc/motd");
        assert_eq!(p.join("x/y").as_str(), "/usr/bin/x/y");
        assert_eq!(p.file_name(), Some("bin"));
    }
}
