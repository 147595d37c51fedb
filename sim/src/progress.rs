//! A sweep's progress on stderr: an indicatif bar on a terminal, plain lines for a log
//! (`--progress` when stderr is not a terminal), or nothing (`--quiet`, tests, one seed).
//! A failing seed is announced as it is found, with its replay command, whenever progress
//! shows: a long sweep's first finding need not wait for the end.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reports::SeedReport;

/// How progress shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Hidden,
    /// A bar redrawn in place (stderr is a terminal).
    Bar,
    /// A line at most every [`LINE_EVERY`], and one per failing seed.
    Lines,
}

/// The most often a plain progress line is printed (the first comes with the first seed).
pub const LINE_EVERY: Duration = Duration::from_secs(1);

/// The prefix of a plain progress line: `faultline: progress: 12/1000 seeds, ...`.
pub const LINE_PREFIX: &str = "faultline: progress: ";

pub struct Progress {
    mode: Mode,
    bar: ProgressBar,
    total: u64,
    what: String,
    start: Instant,
    last_line: Mutex<Option<Instant>>,
}

impl Progress {
    /// `what` names the sweep in plain lines (`chaos-mix`, `hunt volatile-raft-term in ...`).
    pub fn new(mode: Mode, total: u64, what: &str) -> Progress {
        let bar = match mode {
            Mode::Bar => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            _ => ProgressBar::hidden(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} seeds  {per_sec}  {msg}",
            )
            .expect("valid template"),
        );
        bar.set_message("failures: 0");
        Progress {
            mode,
            bar,
            total,
            what: what.to_string(),
            start: Instant::now(),
            last_line: Mutex::new(None),
        }
    }

    /// One more seed done (`done` so far, `failures` among them); `failed` is this seed's
    /// report when it failed.
    pub fn seed_done(&self, done: u64, failures: u64, failed: Option<&SeedReport>) {
        if let Some(f) = failed {
            let kinds = reports::text::join_kinds(&f.kinds());
            let line = format!(
                "faultline: seed {} FAILED ({kinds}); replay: {}",
                f.seed, f.replay
            );
            match self.mode {
                Mode::Bar => self.bar.println(line),
                Mode::Lines => eprintln!("{line}"),
                Mode::Hidden => {}
            }
            self.bar.set_message(format!("failures: {failures}"));
        }
        self.bar.inc(1);
        if self.mode != Mode::Lines {
            return;
        }
        let mut last = self.last_line.lock().unwrap();
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LINE_EVERY) && done < self.total {
            return;
        }
        *last = Some(now);
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-3);
        eprintln!(
            "{LINE_PREFIX}{} {done}/{} seeds, {failures} failing, {:.1} seeds/s",
            self.what,
            self.total,
            done as f64 / secs
        );
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
