//! Per-layer progress bars (indicatif), used only when stderr is a terminal.

use std::collections::HashMap;
use std::sync::Mutex;

use hull_image::{Digest, LayerAction, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub(crate) struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    pub(crate) fn new() -> Bars {
        Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn with(&self, blob: &Digest, f: impl FnOnce(&ProgressBar)) {
        if let Ok(map) = self.bars.lock() {
            if let Some(b) = map.get(blob) {
                f(b);
            }
        }
    }
}

impl Progress for Bars {
    fn layer_start(&self, blob: &Digest, size: u64, action: LayerAction) {
        let bar = self.multi.add(ProgressBar::new(size));
        let style =
            ProgressStyle::with_template("{prefix} {bar:30} {bytes:>10}/{total_bytes:<10} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(blob.hex()[..12].to_string());
        match action {
            LayerAction::Skip => bar.finish_with_message("already exists"),
            LayerAction::UnpackLocal => bar.set_message("unpacking local blob"),
            LayerAction::FetchBlob => bar.set_message("fetching blob"),
            LayerAction::Download => bar.set_message("downloading + unpacking"),
            LayerAction::Upload => bar.set_message("pushing"),
            LayerAction::Present => bar.finish_with_message("already in the registry"),
            LayerAction::Mounted => bar.finish_with_message("mounted from another repository"),
        }
        if let Ok(mut map) = self.bars.lock() {
            map.insert(blob.clone(), bar);
        }
    }

    fn layer_bytes(&self, blob: &Digest, n: u64) {
        self.with(blob, |b| b.inc(n));
    }

    fn layer_done(&self, blob: &Digest, ok: bool) {
        self.with(blob, |b| {
            if !b.is_finished() {
                b.finish_with_message(if ok { "done" } else { "failed" });
            }
        });
    }

    fn message(&self, msg: &str) {
        let _ = self.multi.println(msg);
    }
}
