//! `unsafe` in compiled code: blocks, and `unsafe impl`s, each checked for a `// SAFETY:`
//! comment as clippy's `undocumented_unsafe_blocks` wants it: in the comment lines right
//! above the `unsafe` keyword's line or right above the statement (or item) holding it.
//! Also counts `unsafe fn` declarations, whose callers carry the obligation.

use syn::spanned::Spanned;
use syn::visit::{self, Visit};

use super::lines::Line;
use super::modtree::{Cfg, SourceFile, item_attrs};

/// One `unsafe` block or impl.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnsafeSite {
    pub file: String,
    pub line: usize,
    pub kind: &'static str,
    pub has_safety_comment: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnsafeReport {
    pub blocks: usize,
    pub blocks_with_safety: usize,
    pub impls: usize,
    pub unsafe_fns: usize,
    /// Blocks and impls without a SAFETY comment.
    pub undocumented: Vec<UnsafeSite>,
}

impl UnsafeReport {
    pub fn merge(&mut self, o: UnsafeReport) {
        self.blocks += o.blocks;
        self.blocks_with_safety += o.blocks_with_safety;
        self.impls += o.impls;
        self.unsafe_fns += o.unsafe_fns;
        self.undocumented.extend(o.undocumented);
    }
}

pub fn scan(file: &SourceFile, lines: &[Line], cfg: &Cfg, display: &str) -> UnsafeReport {
    let mut v = Visitor {
        cfg,
        anchors: Vec::new(),
        sites: Vec::new(),
        unsafe_fns: 0,
    };
    v.visit_file(&file.ast);
    let mut report = UnsafeReport {
        unsafe_fns: v.unsafe_fns,
        ..UnsafeReport::default()
    };
    for (line, anchor, kind) in v.sites {
        let documented = has_safety(lines, line) || has_safety(lines, anchor);
        if kind == "block" {
            report.blocks += 1;
            report.blocks_with_safety += usize::from(documented);
        } else {
            report.impls += 1;
        }
        if !documented {
            report.undocumented.push(UnsafeSite {
                file: display.to_owned(),
                line,
                kind,
                has_safety_comment: false,
            });
        }
    }
    report
}

/// Whether the comment lines directly above `line` (1-based) hold `SAFETY:`.
fn has_safety(lines: &[Line], line: usize) -> bool {
    let mut k = line.saturating_sub(1);
    while k >= 1 {
        let l = &lines[k - 1];
        if !l.comment_only() {
            return false;
        }
        if l.comment.contains("SAFETY:") {
            return true;
        }
        k -= 1;
    }
    false
}

struct Visitor<'a> {
    cfg: &'a Cfg,
    /// Start lines of the statements and items around the current node, innermost last.
    anchors: Vec<usize>,
    /// (line of `unsafe`, innermost anchor line, kind)
    sites: Vec<(usize, usize, &'static str)>,
    unsafe_fns: usize,
}

impl<'ast> Visit<'ast> for Visitor<'_> {
    fn visit_item(&mut self, i: &'ast syn::Item) {
        if !self.cfg.enabled(item_attrs(i)) {
            return;
        }
        self.anchors.push(i.span().start().line);
        visit::visit_item(self, i);
        self.anchors.pop();
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !self.cfg.enabled(&f.attrs) {
            return;
        }
        self.unsafe_fns += usize::from(f.sig.unsafety.is_some());
        self.anchors.push(f.span().start().line);
        visit::visit_impl_item_fn(self, f);
        self.anchors.pop();
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.unsafe_fns += usize::from(f.sig.unsafety.is_some());
        visit::visit_item_fn(self, f);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if let Some(u) = &i.unsafety {
            let anchor = self.anchors.last().copied().unwrap_or(u.span.start().line);
            self.sites.push((u.span.start().line, anchor, "impl"));
        }
        visit::visit_item_impl(self, i);
    }

    fn visit_stmt(&mut self, s: &'ast syn::Stmt) {
        self.anchors.push(s.span().start().line);
        visit::visit_stmt(self, s);
        self.anchors.pop();
    }

    fn visit_expr_unsafe(&mut self, e: &'ast syn::ExprUnsafe) {
        let line = e.unsafe_token.span.start().line;
        let anchor = self.anchors.last().copied().unwrap_or(line);
        self.sites.push((line, anchor, "block"));
        visit::visit_expr_unsafe(self, e);
    }
}

#[cfg(test)]
mod tests {
    use super::super::lines::classify;
    use super::*;

    fn report(src: &str) -> UnsafeReport {
        let ast = syn::parse_file(src).unwrap();
        let file = SourceFile {
            path: "x.rs".into(),
            text: src.to_owned(),
            ast,
            excluded: Vec::new(),
        };
        let cfg = Cfg {
            features: Default::default(),
        };
        scan(&file, &classify(src), &cfg, "x.rs")
    }

    #[test]
    fn documented_blocks_in_the_usual_places() {
        let src = "fn f() {\n    // SAFETY: a\n    let x = unsafe { g() };\n    \
                   let y = h(\n        // SAFETY: b\n        unsafe { g() },\n    );\n    \
                   // SAFETY: c\n    // more words\n    unsafe {\n        g();\n    }\n}\n";
        let r = report(src);
        assert_eq!((r.blocks, r.blocks_with_safety), (3, 3));
        assert!(r.undocumented.is_empty());
    }

    #[test]
    fn undocumented_blocks_and_impls_are_listed() {
        let src = "fn f() {\n    let x = 1; // SAFETY: not above\n    unsafe { g() };\n}\n\
                   struct S;\nunsafe impl Send for S {}\n\
                   // SAFETY: documented\nunsafe impl Sync for S {}\n\
                   unsafe fn danger() {}\n";
        let r = report(src);
        assert_eq!((r.blocks, r.blocks_with_safety), (1, 0));
        assert_eq!(r.impls, 2);
        assert_eq!(r.unsafe_fns, 1);
        let lines: Vec<usize> = r.undocumented.iter().map(|s| s.line).collect();
        assert_eq!(lines, [3, 6]);
    }

    #[test]
    fn test_code_is_not_scanned() {
        let src = "#[cfg(test)]\nmod tests {\n    fn t() { unsafe { g() } }\n}\n";
        assert_eq!(report(src).blocks, 0);
    }
}
