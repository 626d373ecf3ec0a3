//! The printed result: sections of rows (one figure each, as min / median / p99), ratios to
//! a peer, verdicts against the targets, and check results. Rendered as Markdown
//! tables so the output pastes into BENCHMARKS.md unchanged.

use std::fmt::Write;

use crate::stats::Summary;

/// What a figure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Ms,
    Seconds,
    JobsPerSec,
    MbPerSec,
    Kb,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::Seconds => "s",
            Unit::JobsPerSec => "jobs/s",
            Unit::MbPerSec => "MB/s",
            Unit::Kb => "KB",
        }
    }

    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Ms | Unit::Seconds => format!("{v:.2}"),
            Unit::JobsPerSec => format!("{v:.1}"),
            Unit::MbPerSec | Unit::Kb => format!("{v:.0}"),
        }
    }
}

/// A target of the issue, judged on one figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub met: bool,
    pub text: String,
}

impl Verdict {
    /// `median / peer median <= max`.
    pub fn ratio_at_most(ratio: Option<f64>, max: f64, peer: &str) -> Verdict {
        match ratio {
            Some(r) => Verdict {
                met: r <= max,
                text: format!("≤ {max}× {peer}: {}", yes_no(r <= max)),
            },
            None => Verdict::unmeasured(format!("≤ {max}× {peer}")),
        }
    }

    /// `median / peer median < max`.
    pub fn ratio_below(ratio: Option<f64>, max: f64, peer: &str) -> Verdict {
        match ratio {
            Some(r) => Verdict {
                met: r < max,
                text: format!("< {max}× {peer}: {}", yes_no(r < max)),
            },
            None => Verdict::unmeasured(format!("< {max}× {peer}")),
        }
    }

    pub fn median_at_least(s: Option<&Summary>, min: f64, unit: Unit) -> Verdict {
        match s {
            Some(s) => Verdict {
                met: s.median >= min,
                text: format!(
                    "≥ {} {}: {}",
                    unit.format(min),
                    unit.label(),
                    yes_no(s.median >= min)
                ),
            },
            None => Verdict::unmeasured(format!("≥ {} {}", unit.format(min), unit.label())),
        }
    }

    pub fn median_at_most(s: Option<&Summary>, max: f64, unit: Unit) -> Verdict {
        match s {
            Some(s) => Verdict {
                met: s.median <= max,
                text: format!(
                    "≤ {} {}: {}",
                    unit.format(max),
                    unit.label(),
                    yes_no(s.median <= max)
                ),
            },
            None => Verdict::unmeasured(format!("≤ {} {}", unit.format(max), unit.label())),
        }
    }

    fn unmeasured(what: String) -> Verdict {
        Verdict {
            met: false,
            text: format!("{what}: not measured"),
        }
    }
}

fn yes_no(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// One figure.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub unit: Unit,
    pub summary: Option<Summary>,
    /// `ours / peer` of the medians, with the peer's name.
    pub versus: Vec<(String, Option<f64>)>,
    pub targets: Vec<Verdict>,
    /// Why a figure is missing, when it is.
    pub missing: Option<String>,
}

impl Row {
    pub fn new(label: impl Into<String>, unit: Unit, summary: Option<Summary>) -> Row {
        Row {
            label: label.into(),
            unit,
            summary,
            versus: Vec::new(),
            targets: Vec::new(),
            missing: None,
        }
    }

    pub fn versus(mut self, peer: impl Into<String>, ratio: Option<f64>) -> Row {
        self.versus.push((peer.into(), ratio));
        self
    }

    pub fn target(mut self, v: Verdict) -> Row {
        self.targets.push(v);
        self
    }

    pub fn missing(mut self, why: impl Into<String>) -> Row {
        self.missing = Some(why.into());
        self
    }
}

/// One phase's result.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
    /// Checks (isolation, teardown) and remarks, one line each.
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: impl Into<String>) -> Section {
        Section {
            title: title.into(),
            ..Section::default()
        }
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    pub fn render(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        if !self.rows.is_empty() {
            out.push_str("| figure | runs | min | median | p99 | unit | ratio | target |\n");
            out.push_str("|---|---:|---:|---:|---:|---|---|---|\n");
            for row in &self.rows {
                out.push_str(&render_row(row));
            }
            out.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

fn render_row(row: &Row) -> String {
    let cells = match (&row.summary, &row.missing) {
        (Some(s), _) => [
            s.runs.to_string(),
            row.unit.format(s.min),
            row.unit.format(s.median),
            row.unit.format(s.p99),
        ],
        (None, why) => [
            "0".into(),
            "—".into(),
            why.clone().unwrap_or_else(|| "not measured".into()),
            "—".into(),
        ],
    };
    let ratios = row
        .versus
        .iter()
        .map(|(peer, r)| match r {
            Some(r) => format!("{r:.2}× {peer}"),
            None => format!("— {peer}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let targets = row
        .targets
        .iter()
        .map(|t| t.text.clone())
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
        row.label,
        cells[0],
        cells[1],
        cells[2],
        cells[3],
        row.unit.label(),
        ratios,
        targets
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_render_with_ratio_and_verdict() {
        let ours = Summary::of(&[10.0, 12.0, 30.0]).unwrap();
        let row = Row::new("rnx job run", Unit::Ms, Some(ours))
            .versus("bwrap", Some(1.5))
            .target(Verdict::ratio_at_most(Some(1.5), 2.0, "bwrap"));
        let text = render_row(&row);
        assert!(text.contains("| rnx job run | 3 | 10.00 | 12.00 | 30.00 | ms |"));
        assert!(text.contains("1.50× bwrap"));
        assert!(text.contains("≤ 2× bwrap: met"));
    }

    #[test]
    fn missed_and_missing_are_visible() {
        let v = Verdict::median_at_least(Summary::of(&[100.0]).as_ref(), 300.0, Unit::JobsPerSec);
        assert!(!v.met);
        assert!(v.text.contains("MISSED"));
        let row = Row::new("runc", Unit::Ms, None).missing("runc not installed");
        assert!(render_row(&row).contains("runc not installed"));
        let v = Verdict::ratio_below(None, 0.5, "runc");
        assert!(!v.met && v.text.contains("not measured"));
    }

    #[test]
    fn sections_list_notes() {
        let mut s = Section::new("Teardown");
        s.note("no leftover");
        let text = s.render();
        assert!(text.starts_with("### Teardown"));
        assert!(text.contains("- no leftover"));
    }
}
