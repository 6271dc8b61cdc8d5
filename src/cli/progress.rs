//! Progress bars for `cairn build` on a terminal: one bar per layer, counting content
//! bytes tarred and compressed, with the rate.

use cairn::build::context::Observer;
use cairn::debian::DownloadProgress;
use cairn::layers::LayerBlob;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Measures how long each build stage takes, passing every event on to `inner`.
pub struct StageClock<'a> {
    inner: &'a dyn Observer,
    stages: Mutex<Vec<(&'static str, Instant)>>,
}

impl<'a> StageClock<'a> {
    pub fn new(inner: &'a dyn Observer) -> Self {
        StageClock {
            inner,
            stages: Mutex::new(Vec::new()),
        }
    }

    /// Each stage with its duration, the last one ending now.
    pub fn finish(&self) -> Vec<(&'static str, Duration)> {
        let stages = self.stages.lock().expect("stage lock");
        let ends = stages
            .iter()
            .skip(1)
            .map(|(_, t)| *t)
            .chain([Instant::now()]);
        stages
            .iter()
            .zip(ends)
            .map(|((name, start), end)| (*name, end - *start))
            .collect()
    }
}

impl DownloadProgress for StageClock<'_> {
    fn downloads_started(&self, files: usize, bytes: u64) {
        self.inner.downloads_started(files, bytes);
    }
    fn downloaded(&self, bytes: u64) {
        self.inner.downloaded(bytes);
    }
    fn downloads_finished(&self) {
        self.inner.downloads_finished();
    }
}

impl Observer for StageClock<'_> {
    fn stage(&self, name: &'static str) {
        self.stages
            .lock()
            .expect("stage lock")
            .push((name, Instant::now()));
        self.inner.stage(name);
    }
    fn layer_started(&self, name: &str, content_bytes: u64) {
        self.inner.layer_started(name, content_bytes);
    }
    fn bytes_written(&self, n: u64) {
        self.inner.bytes_written(n);
    }
    fn layer_finished(&self, layer: &LayerBlob) {
        self.inner.layer_finished(layer);
    }
}

pub struct Bars {
    multi: MultiProgress,
    current: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Bars {
            multi: MultiProgress::new(),
            current: Mutex::new(None),
        }
    }
}

/// One bar for all package downloads (they run in parallel).
impl DownloadProgress for Bars {
    fn downloads_started(&self, files: usize, bytes: u64) {
        let bar = self.multi.add(ProgressBar::new(bytes));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix("download");
        bar.set_message(format!("{files} packages"));
        *self.current.lock().expect("progress lock") = Some(bar);
    }

    fn downloaded(&self, bytes: u64) {
        self.bytes_written(bytes);
    }

    fn downloads_finished(&self) {
        if let Some(bar) = self.current.lock().expect("progress lock").take() {
            bar.finish();
        }
    }
}

impl Observer for Bars {
    fn layer_started(&self, name: &str, content_bytes: u64) {
        let bar = self.multi.add(ProgressBar::new(content_bytes));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(name.to_string());
        *self.current.lock().expect("progress lock") = Some(bar);
    }

    fn bytes_written(&self, n: u64) {
        if let Some(bar) = &*self.current.lock().expect("progress lock") {
            bar.inc(n);
        }
    }

    fn layer_finished(&self, layer: &LayerBlob) {
        if let Some(bar) = self.current.lock().expect("progress lock").take() {
            bar.finish_with_message(format!(
                "{} -> {} gzip",
                HumanBytes(layer.uncompressed_size),
                HumanBytes(layer.size)
            ));
        }
    }
}
