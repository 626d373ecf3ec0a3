//! The surface report as Markdown: one summary table with a column per binary, then the
//! details an auditor checks (crates with features, requests, undocumented `unsafe`, the job
//! filter's rules).

use std::fmt::Write;

use super::BinaryReport;

/// The spawner's line budget promised to auditors.
pub const SPAWNER_LINE_BUDGET: usize = 5_000;

pub fn markdown(reports: &[BinaryReport]) -> String {
    let mut out = String::from("## Privileged surface\n\n");
    let header: Vec<String> = reports.iter().map(|r| format!("`{}`", r.binary)).collect();
    let _ = writeln!(out, "| | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(reports.len()));
    let row = |out: &mut String, label: &str, f: &dyn Fn(&BinaryReport) -> String| {
        let cells: Vec<String> = reports.iter().map(f).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    };
    row(&mut out, "lines of Rust, own crate, without tests", &|r| {
        let own = r.own();
        let budget = if r.binary == "joblet-spawner" {
            let ok = own.lines < SPAWNER_LINE_BUDGET;
            format!(
                " ({} the {SPAWNER_LINE_BUDGET} budget)",
                if ok { "under" } else { "OVER" }
            )
        } else {
            String::new()
        };
        format!("{} in {} files{budget}", own.lines, own.files)
    });
    row(&mut out, "lines of workspace crates linked in", &|r| {
        let libs: Vec<String> = r.code[1..]
            .iter()
            .map(|c| format!("{} {} ({})", c.name, c.lines, features(&c.features)))
            .collect();
        if libs.is_empty() {
            "none".into()
        } else {
            libs.join(", ")
        }
    });
    row(&mut out, "`unsafe` blocks (with `// SAFETY:`)", &|r| {
        let u = &r.own().unsafe_code;
        format!("{} ({})", u.blocks, u.blocks_with_safety)
    });
    row(
        &mut out,
        "`unsafe` blocks in linked workspace crates (with `// SAFETY:`)",
        &|r| {
            let (b, s) = r.code[1..].iter().fold((0, 0), |(b, s), c| {
                (
                    b + c.unsafe_code.blocks,
                    s + c.unsafe_code.blocks_with_safety,
                )
            });
            format!("{b} ({s})")
        },
    );
    row(&mut out, "`unsafe impl` / `unsafe fn`", &|r| {
        let u = &r.own().unsafe_code;
        format!("{} / {}", u.impls, u.unsafe_fns)
    });
    row(&mut out, "crates linked (direct / all)", &|r| {
        let direct = r.linked.iter().filter(|l| l.direct).count();
        format!("{direct} / {}", r.linked.len())
    });
    row(&mut out, "proc-macros (compile time only)", &|r| {
        if r.proc_macros.is_empty() {
            "none".into()
        } else {
            r.proc_macros.join(", ")
        }
    });
    row(&mut out, "request types accepted", &|r| {
        if r.requests.is_empty() {
            "none (see below)".into()
        } else {
            let names: Vec<&str> = r.requests.iter().map(|q| q.name.as_str()).collect();
            format!("{}: {}", names.len(), names.join(", "))
        }
    });
    row(&mut out, "own seccomp filter (allowed syscalls)", &|r| {
        if r.seccomp.own_filter_files.is_empty() {
            "none: the process installs no filter on itself".into()
        } else {
            format!(
                "installed in {} (allowed list not parsed)",
                r.seccomp.own_filter_files.join(", ")
            )
        }
    });
    row(&mut out, "seccomp filter it installs in jobs", &|r| {
        if r.seccomp.job_filter_files.is_empty() {
            "none".into()
        } else {
            format!(
                "{} rules in {}",
                r.seccomp.job_rules.len(),
                r.seccomp.job_filter_files.join(", ")
            )
        }
    });
    out.push('\n');
    for r in reports {
        details(&mut out, r);
    }
    out.push_str(METHOD);
    out
}

fn features(f: &[String]) -> String {
    if f.is_empty() {
        "no features".into()
    } else {
        format!("features {}", f.join(","))
    }
}

fn details(out: &mut String, r: &BinaryReport) {
    let _ = writeln!(out, "### `{}` (package {})\n", r.binary, r.package);
    let _ = writeln!(out, "Requests accepted:");
    for q in &r.requests {
        let _ = writeln!(
            out,
            "- `{}` {{ {} }}: {}",
            q.name,
            q.fields.join(", "),
            q.doc
        );
    }
    if let Some(note) = &r.accepts_note {
        let _ = writeln!(out, "- {note}");
    }
    let _ = writeln!(out, "\nCrates linked (* = direct dependency):");
    let list: Vec<String> = r
        .linked
        .iter()
        .map(|l| {
            let star = if l.direct { "*" } else { "" };
            let f = if l.features.is_empty() {
                String::new()
            } else {
                format!(" [{}]", l.features.join(","))
            };
            format!("{star}{} {}{f}", l.name, l.version)
        })
        .collect();
    let _ = writeln!(out, "{}", list.join(", "));
    let undocumented: Vec<String> = r
        .code
        .iter()
        .flat_map(|c| c.unsafe_code.undocumented.iter())
        .map(|s| format!("{}:{} ({})", s.file, s.line, s.kind))
        .collect();
    let _ = writeln!(
        out,
        "\n`unsafe` without a `// SAFETY:` comment: {}",
        if undocumented.is_empty() {
            "none".to_owned()
        } else {
            undocumented.join(", ")
        }
    );
    if !r.seccomp.job_rules.is_empty() {
        let kind = r
            .seccomp
            .job_filter_kind
            .as_deref()
            .unwrap_or("kind not stated");
        let _ = writeln!(
            out,
            "\nJob seccomp filter ({kind}): {}",
            r.seccomp.job_rules.join(", ")
        );
    }
    out.push('\n');
}

const METHOD: &str = "How this is counted: the files of each binary's module tree (crate root and \
every `mod x;` followed) as a normal build compiles them; items under `#[cfg(test)]`, or \
under a feature the binary does not enable, are left out whole; a line counts if it holds \
anything but whitespace outside comments (doc comments are comments). `unsafe` blocks are \
counted in the same code; a block is documented when the comment lines right above its \
`unsafe` keyword, or right above the statement holding it, contain `SAFETY:`. Crates come \
from `cargo tree -e normal` (proc-macros run at compile time and are not linked). Requests \
are the variants of the channel's request enum in `ipc-proto`. Seccomp: a filter installed by \
the daemon's own `harden` module is its own filter; any other filter code is the one it \
installs in jobs.\n";
