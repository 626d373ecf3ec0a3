//! A progress bar on stderr, drawn by hand: `Reading [=====>    ]  42% 12.3/29.1 MiB`.
//!
//! Only on a terminal and only for large amounts: in a pipe or a log file a bar is noise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::bytes;

/// Below this, the work is over before a bar would be worth reading.
pub const MIN_BYTES: u64 = 1 << 20;
const BAR_WIDTH: usize = 30;
/// At most this often, so a fast copy does not spend its time redrawing.
const REDRAW_EVERY: Duration = Duration::from_millis(80);

#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    enabled: bool,
    /// When the last frame was drawn, its width and the amount it showed.
    drawn: Option<Frame>,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    at: Instant,
    width: usize,
    done: u64,
}

impl Progress {
    /// A bar that draws only when stderr is a terminal and `total` is large.
    pub fn on_terminal(label: &'static str, total: u64) -> Self {
        let enabled = total >= MIN_BYTES && std::io::stderr().is_terminal();
        Self::new(label, total, enabled)
    }

    pub fn new(label: &'static str, total: u64, enabled: bool) -> Self {
        Progress {
            label,
            total,
            done: 0,
            enabled,
            drawn: None,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Moves the bar to `done` (capped at the total), redrawing when it visibly changed.
    pub fn set(&mut self, done: u64) {
        self.done = done.min(self.total);
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let due = match self.drawn {
            None => true,
            Some(last) => {
                last.done != self.done && (self.done == self.total || now - last.at >= REDRAW_EVERY)
            }
        };
        if due {
            let line = render(self.label, self.done, self.total);
            draw(&format!("\r{line}"));
            self.drawn = Some(Frame {
                at: now,
                width: line.chars().count(),
                done: self.done,
            });
        }
    }

    /// Draws the bar full and ends its line.
    pub fn finish(&mut self) {
        if self.enabled {
            self.set(self.total);
            draw("\n");
            self.enabled = false;
        }
    }

    /// Erases the bar (before an error message takes its place).
    pub fn clear(&mut self) {
        if let (true, Some(last)) = (self.enabled, self.drawn) {
            draw(&format!("\r{}\r", " ".repeat(last.width)));
        }
        self.enabled = false;
    }
}

fn draw(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// One frame of the bar.
pub fn render(label: &str, done: u64, total: u64) -> String {
    let ratio = if total == 0 {
        1.0
    } else {
        done.min(total) as f64 / total as f64
    };
    let filled = ((ratio * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
    let mut bar = "=".repeat(filled);
    if filled < BAR_WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat(BAR_WIDTH - filled - 1));
    }
    format!(
        "{label} [{bar}] {:>3}% {}",
        (ratio * 100.0) as u32,
        bytes::fraction(done.min(total), total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_show_bar_percent_and_amounts() {
        assert_eq!(
            render("Reading", 12_897_485, 30_513_561),
            "Reading [============>                 ]  42% 12.3/29.1 MiB"
        );
        assert_eq!(
            render("Sending", 0, 4 << 20),
            "Sending [>                             ]   0% 0.0/4.0 MiB"
        );
        assert_eq!(
            render("Sending", 4 << 20, 4 << 20),
            "Sending [==============================] 100% 4.0/4.0 MiB"
        );
        // More than the total (framing overhead) never goes past 100 %.
        assert_eq!(
            render("Sending", 5 << 20, 4 << 20),
            render("Sending", 4 << 20, 4 << 20)
        );
        assert!(render("Reading", 0, 0).contains("100%"));
    }

    #[test]
    fn a_disabled_bar_tracks_but_never_draws() {
        let mut p = Progress::new("Reading", 10, false);
        p.set(20);
        assert_eq!(p.done, 10);
        assert!(p.drawn.is_none());
        p.finish();
        p.clear();
        assert!(!p.is_enabled());
    }
}
