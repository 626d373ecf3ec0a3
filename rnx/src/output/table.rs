//! Aligned text tables: columns padded to their widest cell, two spaces apart, no trailing
//! spaces.

#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    rule: bool,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            rule: false,
        }
    }

    /// Adds a line of dashes under the headers (as Joblet's `job list` prints).
    pub fn with_rule(mut self) -> Self {
        self.rule = true;
        self
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        widths
    }

    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        push_line(&mut out, &self.headers, &widths);
        if self.rule {
            let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            push_line(&mut out, &dashes, &widths);
        }
        for row in &self.rows {
            push_line(&mut out, row, &widths);
        }
        out
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn push_line(out: &mut String, cells: &[String], widths: &[usize]) {
    let mut line = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        if i + 1 < cells.len() {
            line.push_str(&" ".repeat(w - width(cell)));
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// The first line of `text`, cut to `max` characters with "..." when it was longer or had
/// more lines.
pub fn truncate_line(text: &str, max: usize) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let more_lines = lines.next().is_some();
    let chars = first.chars().count();
    if chars > max {
        let kept: String = first.chars().take(max.saturating_sub(3)).collect();
        return format!("{kept}...");
    }
    if more_lines {
        if chars + 3 > max {
            let kept: String = first.chars().take(max.saturating_sub(3)).collect();
            return format!("{kept}...");
        }
        return format!("{first}...");
    }
    first.to_string()
}

/// `Label:  value` lines with the values aligned, each line starting with `indent`.
pub fn fields(rows: &[(&str, String)], indent: &str) -> String {
    let width = rows.iter().map(|(l, _)| width(l)).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (label, value) in rows {
        let label = format!("{label}:");
        out.push_str(format!("{indent}{label:<width$} {value}").trim_end());
        out.push('\n');
    }
    out
}

/// Every line of `text` with `prefix` in front.
pub fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut t = Table::new(["ID", "STATUS", "COMMAND"]);
        t.row(["a1", "RUNNING", "sleep 10"]);
        t.row(["b22222", "COMPLETED", "echo hi"]);
        assert_eq!(
            t.render(),
            "ID      STATUS     COMMAND\n\
             a1      RUNNING    sleep 10\n\
             b22222  COMPLETED  echo hi\n"
        );
    }

    #[test]
    fn rule_and_short_rows_and_no_trailing_spaces() {
        let mut t = Table::new(["NAME", "NOTE"]).with_rule();
        t.row(["x"]);
        assert_eq!(t.render(), "NAME  NOTE\n----  ----\nx\n");
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut t = Table::new(["A", "B"]);
        t.row(["é", "z"]);
        t.row(["ab", "y"]);
        assert_eq!(t.render(), "A   B\né   z\nab  y\n");
    }

    #[test]
    fn long_or_multiline_commands_are_cut() {
        assert_eq!(truncate_line("echo hi", 80), "echo hi");
        assert_eq!(truncate_line("line1\nline2", 80), "line1...");
        let long = "x".repeat(100);
        let cut = truncate_line(&long, 80);
        assert_eq!(cut.chars().count(), 80);
        assert!(cut.ends_with("..."));
        let exact = "y".repeat(80);
        assert_eq!(truncate_line(&exact, 80), exact);
        assert_eq!(truncate_line("", 80), "");
    }

    #[test]
    fn fields_align_their_values() {
        let text = fields(
            &[
                ("Cores", "2".into()),
                ("Load Average", "0.5".into()),
                ("Empty", String::new()),
            ],
            "  ",
        );
        assert_eq!(text, "  Cores:        2\n  Load Average: 0.5\n  Empty:\n");
        assert_eq!(indent("a\nb\n", "> "), "> a\n> b\n");
    }
}
