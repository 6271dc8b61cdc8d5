//! Progress bars for `cairn build` on a terminal: one bar per layer, counting content
//! bytes tarred and compressed, with the rate.

use cairn::build::Observer;
use cairn::layers::LayerBlob;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use std::sync::Mutex;

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
