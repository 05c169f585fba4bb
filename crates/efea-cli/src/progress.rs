//! The training observer of `train` and `cv`: progress bars on a terminal, plain lines
//! otherwise, one summary line per epoch.

use std::io::IsTerminal;

use efea_train::{BatchProgress, EpochMetrics, Observer, RunStart};
use indicatif::{ProgressBar, ProgressStyle};

use crate::device::DeviceArgs;

/// Progress bars on a terminal, plain lines otherwise; one summary line per epoch.
pub struct Progress {
    /// Nothing within an epoch: neither bars nor plain progress lines.
    quiet: bool,
    /// The devices as the user named them, for the run's first line.
    devices: Vec<String>,
    bars: bool,
    bar: Option<ProgressBar>,
    /// Next batch at which a plain progress line is printed.
    next_line: usize,
    epochs: usize,
    pub select_name: String,
}

impl Progress {
    pub fn new(args: &DeviceArgs) -> Self {
        let quiet = args.quiet;
        Self {
            quiet,
            devices: args.names(),
            bars: !quiet && std::io::stdout().is_terminal(),
            bar: None,
            next_line: 0,
            epochs: 0,
            select_name: String::new(),
        }
    }

    fn finish_bar(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn run_started(&mut self, start: &RunStart) {
        self.epochs = start.epochs;
        self.select_name = start.select_name.clone();
        println!(
            "run {}: {} training samples, selection on {} ({} samples); {} parameters, {} multiply-adds; on {}",
            start.dir.display(),
            start.train_samples,
            start.select_name,
            start.select_samples,
            efea_train::report::thousands(start.params),
            efea_train::report::thousands(start.macs),
            self.devices.join(", ")
        );
    }

    fn epoch_started(&mut self, epoch: usize, epochs: usize, batches: usize) {
        self.next_line = batches.div_ceil(4);
        if self.bars {
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{epochs}"));
            self.bar = Some(bar);
        }
    }

    fn batch_done(&mut self, p: &BatchProgress) {
        let message = format!(
            "loss {:.4} acc {:5.1} % {:.0} img/s lr {:.1e}",
            p.loss,
            100.0 * p.accuracy,
            p.images_per_sec,
            p.lr
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(p.batch as u64);
                bar.set_message(message);
            }
            None if !self.quiet && p.batch >= self.next_line && p.batch < p.batches => {
                println!(
                    "  epoch {}/{} batch {}/{}: {message}",
                    p.epoch, self.epochs, p.batch, p.batches
                );
                self.next_line += p.batches.div_ceil(4);
            }
            None => {}
        }
    }

    fn epoch_done(&mut self, m: &EpochMetrics, best: bool) {
        self.finish_bar();
        println!(
            "epoch {:>3}/{}  train loss {:.4} acc {:5.1} %  {} loss {:.4} acc {:5.1} %  lr {:.1e}  {:.0} img/s  {:.0} s{}",
            m.epoch,
            self.epochs,
            m.train_loss,
            100.0 * m.train_accuracy,
            self.select_name,
            m.val_loss,
            100.0 * m.val_accuracy,
            m.lr,
            m.images_per_sec,
            m.seconds,
            if best { "  *best" } else { "" }
        );
    }

    fn evaluation_started(&mut self, what: &str, samples: usize) {
        self.finish_bar();
        if self.bars {
            let bar = ProgressBar::new(samples as u64);
            bar.set_style(
                ProgressStyle::with_template("  scoring {prefix} [{bar:30}] {pos}/{len}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            self.bar = Some(bar);
        }
    }

    fn evaluation_progress(&mut self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(done as u64);
        }
    }

    fn evaluation_done(&mut self) {
        self.finish_bar();
    }

    fn note(&mut self, message: &str) {
        self.finish_bar();
        println!("{message}");
    }
}
