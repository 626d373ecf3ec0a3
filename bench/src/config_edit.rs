//! Edits of the generated `joblet-config.yml`, as text, so its comments and embedded PEM stay
//! as `joblet init` wrote them. The file uses two spaces per level.

/// Sets `path` (sections, then the key) to `value`, creating what is missing.
pub fn set_scalar(text: &str, path: &[&str], value: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut range = (0, lines.len());
    for (depth, key) in path.iter().enumerate() {
        let indent = "  ".repeat(depth);
        let last = depth + 1 == path.len();
        match find_key(&lines, range, &indent, key) {
            Some(at) if last => {
                lines[at] = format!("{indent}{key}: {value}");
                break;
            }
            Some(at) => range = (at + 1, block_end(&lines, at + 1, depth)),
            None => {
                // Missing from here down: write the rest of the path under the parent.
                let insert_at = if depth == 0 { lines.len() } else { range.0 };
                let new = path[depth..].iter().enumerate().map(|(j, k)| {
                    let pad = "  ".repeat(depth + j);
                    if depth + j + 1 == path.len() {
                        format!("{pad}{k}: {value}")
                    } else {
                        format!("{pad}{k}:")
                    }
                });
                lines.splice(insert_at..insert_at, new);
                break;
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The line in `range` that holds `key:` at exactly `indent`.
fn find_key(lines: &[String], range: (usize, usize), indent: &str, key: &str) -> Option<usize> {
    (range.0..range.1).find(|&i| {
        let l = &lines[i];
        l.strip_prefix(indent).is_some_and(|rest| {
            !rest.starts_with(' ')
                && rest
                    .strip_prefix(key)
                    .is_some_and(|after| after.starts_with(':'))
        })
    })
}

/// The end (exclusive) of the block that starts at `from` under a key at `depth`: the next
/// non-blank, non-comment line indented no deeper than that key.
fn block_end(lines: &[String], from: usize, depth: usize) -> usize {
    let max_indent = depth * 2;
    (from..lines.len())
        .find(|&i| {
            let l = &lines[i];
            let trimmed = l.trim_start();
            !trimmed.is_empty()
                && !trimmed.starts_with('#')
                && l.len() - trimmed.len() <= max_indent
        })
        .unwrap_or(lines.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "server:\n  port: 1\njoblet:\n  maxConcurrentJobs: 0\n  jobTimeout: \"0s\"\n\
                       security:\n  serverCert: |\n    -----BEGIN-----\n    slots: 3\n    -----END-----\n\
                       cgroup:\n  baseDir: \"x\"\n";

    fn parse(text: &str) -> serde_json::Value {
        serde_saphyr::from_str(text).unwrap()
    }

    #[test]
    fn replaces_an_existing_key() {
        let out = set_scalar(DOC, &["joblet", "maxConcurrentJobs"], "1100");
        let v = parse(&out);
        assert_eq!(v["joblet"]["maxConcurrentJobs"], 1100);
        assert_eq!(v["joblet"]["jobTimeout"], "0s");
    }

    #[test]
    fn creates_missing_sections_under_an_existing_one() {
        let out = set_scalar(DOC, &["security", "userNamespace", "slots"], "1100");
        let v = parse(&out);
        assert_eq!(v["security"]["userNamespace"]["slots"], 1100);
        // The PEM block (whose text happens to hold "slots:") is untouched.
        assert!(
            v["security"]["serverCert"]
                .as_str()
                .unwrap()
                .contains("slots: 3")
        );
        assert_eq!(v["cgroup"]["baseDir"], "x");
    }

    #[test]
    fn edits_a_nested_key_that_exists() {
        let doc = "security:\n  userNamespace:\n    enabled: true\n    slots: 1024\nx: 1\n";
        let out = set_scalar(doc, &["security", "userNamespace", "slots"], "2000");
        let v = parse(&out);
        assert_eq!(v["security"]["userNamespace"]["slots"], 2000);
        assert_eq!(v["security"]["userNamespace"]["enabled"], true);
        assert_eq!(v["x"], 1);
    }

    #[test]
    fn creates_a_top_level_section() {
        let out = set_scalar(DOC, &["monitoring", "system_interval"], "\"1s\"");
        assert_eq!(parse(&out)["monitoring"]["system_interval"], "1s");
    }

    #[test]
    fn a_key_of_another_section_is_not_taken() {
        let doc = "a:\n  slots: 1\nb:\n  other: 2\n";
        let out = set_scalar(doc, &["b", "slots"], "9");
        let v = parse(&out);
        assert_eq!(v["a"]["slots"], 1);
        assert_eq!(v["b"]["slots"], 9);
    }
}
