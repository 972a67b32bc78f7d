//! Progress bars for long transfers (`bench`, `send-file`), drawn on stderr only for a person:
//! never with `--json`, never when stderr is not a terminal, so scripts and logs see nothing.

use super::Ctx;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A byte-count progress bar that is a no-op when hidden.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar for `total` bytes labelled `what`, shown when a person watches and the transfer
    /// is big enough (`min_bytes`) to take a noticeable time.
    pub fn bytes(ctx: &Ctx, what: &str, total: u64, min_bytes: u64) -> Self {
        let shown = !ctx.json && std::io::stderr().is_terminal() && total >= min_bytes;
        let bar = shown.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(what.to_string());
            bar
        });
        Progress { bar }
    }

    /// `n` more bytes done.
    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// `done` bytes done so far.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// Removes the bar (the result is printed after it).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A wait shown to a person once it has lasted a second: a spinner on a terminal, else a dot
/// per second (the reference's `daemon start` output); nothing with `--json`.
pub struct Waiting {
    json: bool,
    message: String,
    started: std::time::Instant,
    spinner: Option<ProgressBar>,
    dots: u64,
}

impl Waiting {
    /// Starts timing a wait described by `message`.
    pub fn new(ctx: &Ctx, message: &str) -> Self {
        Waiting {
            json: ctx.json,
            message: message.to_string(),
            started: std::time::Instant::now(),
            spinner: None,
            dots: 0,
        }
    }

    /// Call while waiting: draws the spinner or the dots that are due.
    pub fn tick(&mut self) {
        let secs = self.started.elapsed().as_secs();
        if self.json || secs == 0 {
            return;
        }
        if std::io::stderr().is_terminal() {
            if self.spinner.is_none() {
                let spinner = ProgressBar::new_spinner();
                spinner.set_message(self.message.clone());
                spinner.enable_steady_tick(std::time::Duration::from_millis(120));
                self.spinner = Some(spinner);
            }
            return;
        }
        use std::io::Write;
        while self.dots < secs {
            eprint!(".");
            self.dots += 1;
        }
        let _ = std::io::stderr().flush();
    }

    /// The wait is over: clears the spinner, or ends the line of dots.
    pub fn finish(&self) {
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        } else if self.dots > 0 {
            eprintln!();
        }
    }
}
