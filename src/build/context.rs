//! What every stage of a build is given: the settings (what to build and how), the
//! runtime handles (cache, registry client, signing key, cancel flag), and the
//! [`BuildContext`] that carries the layout being written, the progress observer, the
//! epoch and the thread count from stage to stage.

use super::error::BuildError;
use crate::debian;
use crate::diag::Interrupted;
use crate::keys::SigningKey;
use crate::layers::{cache::LayerCache, LayerBlob};
use crate::oci::layout::LayoutWriter;
use crate::output::archive::OutputFormat;
use crate::resolve::containment::SourceRoots;
use crate::resolve::LockMode;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How to build: plain values, the same for every run of the same command line.
pub struct BuildSettings {
    /// The layout goes to `out_dir/<name>/` (an archive to `out_dir/<name>.tar`).
    pub out_dir: PathBuf,
    pub format: OutputFormat,
    /// The names a `docker-archive` gives its image; empty: `<recipe name>:latest`.
    pub docker_tags: Vec<crate::output::archive::DockerTag>,
    pub lock_mode: LockMode,
    /// Compression threads; output bytes do not depend on it.
    pub jobs: usize,
    /// SOURCE_DATE_EPOCH as read by the caller; used when the recipe sets no epoch.
    pub source_date_epoch: Option<u64>,
    /// Wall clock (seconds since the epoch) for `startedOn`/`finishedOn` in the
    /// provenance; `None` keeps the provenance free of times (the default).
    pub clock: Option<fn() -> u64>,
    /// Cache, clock and host mirrors for Debian packages (`packages:` recipes).
    pub packages: debian::PackageOptions,
    /// Outside directories sources may come from (`--allow-source-root`); by default
    /// only the recipe's own directory tree.
    pub source_roots: SourceRoots,
    /// Refuse, rather than warn about, what the image's platform cannot run (ELF
    /// files for another machine).
    pub strict: bool,
}

/// What a build talks to and is stopped by: live objects, not settings.
pub struct BuildHandles {
    /// Set (e.g. by a Ctrl-C handler) to stop the build; nothing is published.
    pub cancel: Arc<AtomicBool>,
    /// Signs the provenance and SBOM statements when given.
    pub sign_key: Option<SigningKey>,
    /// Fetches a `ref:` base image; needed only by recipes that have one.
    pub registry: Option<crate::registry::Client>,
    /// Reuse and store layer blobs here; `None` writes every layer anew.
    pub cache: Option<LayerCache>,
    /// Signs a `boot: uefi` disk's unified kernel image, in place of the recipe's
    /// `vm.secure_boot` (`--secure-boot-key`, `--secure-boot-cert`).
    pub secure_boot: Option<crate::disk::secure_boot::SecureBootKey>,
}

/// Told about progress; the CLI draws bars and measures stage times with it.
pub trait Observer: debian::DownloadProgress {
    /// A new stage of the build begins (`resolve`, `layers`, `sbom`, `disk`, `sign`,
    /// `publish`); the previous one has ended.
    fn stage(&self, _name: &'static str) {}
    fn layer_started(&self, _name: &str, _content_bytes: u64) {}
    fn bytes_written(&self, _n: u64) {}
    fn layer_finished(&self, _layer: &LayerBlob) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}
impl debian::DownloadProgress for Quiet {}

/// One build in progress, handed from stage to stage. Owns the layout being written:
/// the publish stage consumes it, and dropping it anywhere else (an error, an
/// interruption) removes everything written.
pub struct BuildContext<'a> {
    pub settings: &'a BuildSettings,
    pub handles: &'a BuildHandles,
    pub layout: LayoutWriter,
    pub observer: &'a dyn Observer,
    /// The epoch every timestamp in the image is set to.
    pub epoch: u64,
    /// Compression threads, at least one.
    pub jobs: usize,
    /// The wall clock when the build started, if the provenance records times.
    pub started_on: Option<u64>,
}

impl BuildContext<'_> {
    /// The one place a stage asks whether the build was interrupted.
    pub fn check_cancelled(&self) -> Result<(), BuildError> {
        if self.handles.cancel.load(Ordering::Relaxed) {
            Err(Interrupted.into())
        } else {
            Ok(())
        }
    }

    /// The cancel flag itself, for the loops below the stages that poll it.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.handles.cancel
    }

    /// The wall clock now, if the provenance records times.
    pub fn now(&self) -> Option<u64> {
        self.settings.clock.map(|now| now())
    }
}
