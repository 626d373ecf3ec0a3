//! Seccomp in a binary's source. Two different things are told apart:
//! - the process's **own** filter, which a daemon would install on itself while hardening at
//!   start (in its `harden` module, where every daemon hardens itself);
//! - a filter it installs in the **jobs** it starts (the spawner's job filter), kept as a
//!   table of rules named by syscall (`RULES`), whose names are listed.

use syn::visit::{self, Visit};

use super::modtree::SourceFile;

/// Words that only code installing a seccomp filter uses.
const INSTALL_MARKERS: &[&str] = &[
    "apply_filter",
    "SECCOMP_SET_MODE_FILTER",
    "PR_SET_SECCOMP",
    "SeccompFilter",
    "seccompiler",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Seccomp {
    /// Files of the daemon's own hardening that install a filter (empty: none).
    pub own_filter_files: Vec<String>,
    /// Other files that build or install a filter (for the jobs).
    pub job_filter_files: Vec<String>,
    /// The syscall names in the job filter's `RULES` table.
    pub job_rules: Vec<String>,
    /// What the job filter's documentation says it is, when it says.
    pub job_filter_kind: Option<String>,
}

pub fn scan(files: &[(String, &SourceFile)]) -> Seccomp {
    let mut s = Seccomp::default();
    for (display, f) in files {
        if !INSTALL_MARKERS.iter().any(|m| f.text.contains(m)) {
            continue;
        }
        let own = f
            .path
            .file_stem()
            .is_some_and(|n| n.to_string_lossy().starts_with("harden"));
        if own {
            s.own_filter_files.push(display.clone());
            continue;
        }
        s.job_filter_files.push(display.clone());
        let mut rules = RuleNames::default();
        rules.visit_file(&f.ast);
        s.job_rules.extend(rules.names);
        if f.text.contains("deny-list") {
            s.job_filter_kind =
                Some("deny-list: the listed calls are refused, the rest allowed".into());
        } else if f.text.contains("allow-list") {
            s.job_filter_kind = Some("allow-list: only the listed calls are allowed".into());
        }
    }
    s
}

/// String literals naming rules inside a `RULES` constant or static: the first argument of
/// each call (`always("mount", ...)`) and `name: "..."` fields.
#[derive(Default)]
struct RuleNames {
    inside: bool,
    names: Vec<String>,
}

impl<'ast> Visit<'ast> for RuleNames {
    fn visit_item_const(&mut self, c: &'ast syn::ItemConst) {
        self.inside = c.ident == "RULES";
        visit::visit_item_const(self, c);
        self.inside = false;
    }

    fn visit_item_static(&mut self, s: &'ast syn::ItemStatic) {
        self.inside = s.ident == "RULES";
        visit::visit_item_static(self, s);
        self.inside = false;
    }

    fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
        if self.inside
            && let Some(syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            })) = c.args.first()
        {
            self.names.push(s.value());
        }
        visit::visit_expr_call(self, c);
    }

    fn visit_field_value(&mut self, f: &'ast syn::FieldValue) {
        if self.inside
            && matches!(&f.member, syn::Member::Named(n) if n == "name")
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &f.expr
        {
            self.names.push(s.value());
        }
        visit::visit_field_value(self, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, src: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            text: src.to_owned(),
            ast: syn::parse_file(src).unwrap(),
            excluded: Vec::new(),
        }
    }

    #[test]
    fn job_filter_rules_are_listed_and_own_filter_is_told_apart() {
        let job = file(
            "src/launch/seccomp.rs",
            "//! It is a deny-list.\nuse seccompiler::SeccompFilter;\n\
             pub const RULES: &[Rule] = &[always(\"mount\", 1, \"x\"), \
             Rule { name: \"ptrace\", nr: 2 }];\nconst OTHER: &[Rule] = &[always(\"no\", 3, \"\")];\n",
        );
        let harden = file("src/harden.rs", "fn h() { apply_filter(&f); }\n");
        let plain = file("src/main.rs", "fn main() {}\n");
        let s = scan(&[
            ("launch/seccomp.rs".into(), &job),
            ("harden.rs".into(), &harden),
            ("main.rs".into(), &plain),
        ]);
        assert_eq!(s.job_rules, ["mount", "ptrace"]);
        assert_eq!(s.job_filter_files, ["launch/seccomp.rs"]);
        assert_eq!(s.own_filter_files, ["harden.rs"]);
        assert!(s.job_filter_kind.unwrap().starts_with("deny-list"));
    }

    #[test]
    fn no_filter_at_all() {
        let plain = file("src/harden.rs", "fn h() { set_no_new_privs(); }\n");
        assert_eq!(scan(&[("harden.rs".into(), &plain)]), Seccomp::default());
    }
}
