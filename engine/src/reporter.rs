//! What a run tells the person watching it: one live line per running stage when stderr is a terminal
//! (indicatif), plain lines otherwise, and a summary at the end.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Prints run progress to stderr.
pub struct Reporter {
    live: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    quiet_cached: bool,
}

/// Formats a duration the way every yiflow line does (`850ms`, `12.3s`, `4m05s`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        if s < 3600 {
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
        }
    }
}

impl Reporter {
    /// A reporter drawing live bars when stderr is a terminal.
    pub fn new() -> Self {
        let live = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Self {
            live,
            bars: Mutex::new(HashMap::new()),
            quiet_cached: false,
        }
    }

    /// Plain lines whatever stderr is (tests, logs).
    pub fn plain() -> Self {
        Self {
            live: None,
            bars: Mutex::new(HashMap::new()),
            quiet_cached: false,
        }
    }

    /// Do not print a line for every cached stage (watch mode reruns).
    pub fn set_quiet_cached(&mut self, quiet: bool) {
        self.quiet_cached = quiet;
    }

    /// A line above the live bars (or a plain line).
    pub fn line(&self, text: &str) {
        match &self.live {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    pub fn started(&self, stage: &str, detail: &str) {
        match &self.live {
            Some(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix:.bold} {elapsed:>6} {wide_msg:.dim}",
                    )
                    .expect("valid template"),
                );
                bar.set_prefix(stage.to_owned());
                bar.set_message(detail.to_owned());
                bar.enable_steady_tick(Duration::from_millis(100));
                self.bars
                    .lock()
                    .expect("reporter lock")
                    .insert(stage.to_owned(), bar);
            }
            None if detail.is_empty() => eprintln!("start   {stage}"),
            None => eprintln!("start   {stage} on {detail}"),
        }
    }

    fn finish_bar(&self, stage: &str) {
        if let Some(bar) = self.bars.lock().expect("reporter lock").remove(stage) {
            bar.finish_and_clear();
            if let Some(multi) = &self.live {
                multi.remove(&bar);
            }
        }
    }

    pub fn ran(&self, stage: &str, took: Duration, note: &str) {
        self.finish_bar(stage);
        self.line(&format!(
            "ran     {stage} ({}){note}",
            format_duration(took)
        ));
    }

    pub fn cached(&self, stage: &str) {
        if !self.quiet_cached {
            self.line(&format!("cached  {stage}"));
        }
    }

    pub fn failed(&self, stage: &str, why: &str, log: Option<&str>) {
        self.finish_bar(stage);
        let log = log
            .map(|l| format!("\n        log: {l}"))
            .unwrap_or_default();
        self.line(&format!("FAILED  {stage}: {why}{log}"));
    }

    pub fn retrying(&self, stage: &str, why: &str, attempt: u32, of: u32) {
        self.finish_bar(stage);
        self.line(&format!(
            "retry   {stage}: {why} (attempt {attempt} of {of})"
        ));
    }

    /// A stage's Slurm job was submitted, or found again from an earlier run.
    pub fn submitted(&self, stage: &str, job: &str, attached: bool) {
        let how = if attached {
            "re-attached to"
        } else {
            "submitted as"
        };
        self.set_message(stage, &format!("slurm job {job}"));
        self.line(&format!("submit  {stage}: {how} slurm job {job}"));
    }

    /// What Slurm says of a stage's job, on its live bar (plain output stays quiet).
    pub fn job_state(&self, stage: &str, job: &str, state: &str) {
        self.set_message(stage, &format!("slurm job {job} {state}"));
    }

    fn set_message(&self, stage: &str, text: &str) {
        if let Some(bar) = self.bars.lock().expect("reporter lock").get(stage) {
            bar.set_message(text.to_owned());
        }
    }

    pub fn cancelled(&self, stage: &str) {
        self.finish_bar(stage);
        self.line(&format!("stopped {stage}"));
    }

    pub fn skipped(&self, stage: &str, because: &str) {
        self.line(&format!("skipped {stage}: {because}"));
    }

    pub fn warn(&self, text: &str) {
        self.line(&format!("warning: {text}"));
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(format_duration(Duration::from_secs(7300)), "2h01m");
    }
}
