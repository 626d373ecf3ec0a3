//! The source a binary is built from: its module tree followed from the crate root through
//! `mod x;` declarations, leaving out what `#[cfg(...)]` turns off in a normal build (`test`,
//! features that are not enabled), with the line ranges of such items inside the files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Item, Meta, Token};

use super::SurfaceError;

/// One file of the tree, and the lines (1-based, inclusive) of the items compiled out.
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    pub ast: syn::File,
    pub excluded: Vec<(usize, usize)>,
}

impl std::fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFile")
            .field("path", &self.path)
            .field("excluded", &self.excluded)
            .finish_non_exhaustive()
    }
}

impl SourceFile {
    pub fn is_excluded(&self, line: usize) -> bool {
        self.excluded.iter().any(|&(a, b)| (a..=b).contains(&line))
    }
}

/// What a normal (non-test) build of the crate sees.
#[derive(Debug, Clone)]
pub struct Cfg {
    pub features: BTreeSet<String>,
}

impl Cfg {
    /// Whether the item with these attributes is compiled.
    pub fn enabled(&self, attrs: &[Attribute]) -> bool {
        attrs.iter().filter(|a| a.path().is_ident("cfg")).all(|a| {
            a.parse_args::<Meta>()
                .map(|m| self.eval(&m))
                .unwrap_or(true)
        })
    }

    fn eval(&self, m: &Meta) -> bool {
        match m {
            Meta::Path(p) => {
                !p.is_ident("test")
                    && !p.is_ident("debug_assertions")
                    && !p.is_ident("miri")
                    && !p.is_ident("fuzzing")
            }
            Meta::NameValue(nv) => {
                let value = match &nv.value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => s.value(),
                    _ => return true,
                };
                if nv.path.is_ident("feature") {
                    self.features.contains(&value)
                } else if nv.path.is_ident("target_os") {
                    value == "linux"
                } else if nv.path.is_ident("target_arch") {
                    value == "x86_64"
                } else {
                    true
                }
            }
            Meta::List(list) => {
                let inner = list
                    .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                    .map(|p| p.into_iter().collect::<Vec<_>>())
                    .unwrap_or_default();
                if list.path.is_ident("not") {
                    !inner.first().is_some_and(|m| self.eval(m))
                } else if list.path.is_ident("any") {
                    inner.iter().any(|m| self.eval(m))
                } else {
                    // all(...), and anything unknown counts as compiled.
                    inner.iter().all(|m| self.eval(m))
                }
            }
        }
    }
}

/// Every file of the tree rooted at `root` (a crate's `lib.rs` or `main.rs`).
pub fn walk(root: &Path, cfg: &Cfg) -> Result<Vec<SourceFile>, SurfaceError> {
    let mut out = Vec::new();
    let dir = root.parent().unwrap_or(Path::new(".")).to_path_buf();
    visit_file(root, &dir, cfg, &mut out)?;
    Ok(out)
}

fn visit_file(
    path: &Path,
    mod_dir: &Path,
    cfg: &Cfg,
    out: &mut Vec<SourceFile>,
) -> Result<(), SurfaceError> {
    let text = std::fs::read_to_string(path).map_err(|source| SurfaceError::Read {
        path: path.to_owned(),
        source,
    })?;
    let ast = syn::parse_file(&text).map_err(|e| SurfaceError::Parse {
        path: path.to_owned(),
        reason: format!("line {}: {e}", e.span().start().line),
    })?;
    let mut excluded = Vec::new();
    let mut children = Vec::new();
    collect(&ast.items, path, mod_dir, cfg, &mut excluded, &mut children);
    out.push(SourceFile {
        path: path.to_owned(),
        text,
        ast,
        excluded,
    });
    for (child, child_dir) in children {
        visit_file(&child, &child_dir, cfg, out)?;
    }
    Ok(())
}

/// Records compiled-out items and the files of `mod x;` declarations (with the directory
/// their own submodules live in).
fn collect(
    items: &[Item],
    file: &Path,
    mod_dir: &Path,
    cfg: &Cfg,
    excluded: &mut Vec<(usize, usize)>,
    children: &mut Vec<(PathBuf, PathBuf)>,
) {
    for item in items {
        if !cfg.enabled(item_attrs(item)) {
            let span = item.span();
            excluded.push((span.start().line, span.end().line));
            continue;
        }
        let Item::Mod(m) = item else {
            continue;
        };
        let name = m.ident.to_string();
        match &m.content {
            Some((_, inner)) => collect(inner, file, &mod_dir.join(&name), cfg, excluded, children),
            None => {
                if let Some(p) = module_file(m, file, mod_dir, &name) {
                    let own_dir = if is_mod_rs(&p) {
                        p.parent().unwrap_or(mod_dir).to_path_buf()
                    } else {
                        mod_dir.join(&name)
                    };
                    children.push((p, own_dir));
                }
            }
        }
    }
}

fn is_mod_rs(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "mod.rs")
}

/// `#[path = "..."]`, else `dir/name.rs`, else `dir/name/mod.rs`.
fn module_file(m: &syn::ItemMod, file: &Path, mod_dir: &Path, name: &str) -> Option<PathBuf> {
    for a in &m.attrs {
        if let Meta::NameValue(nv) = &a.meta
            && nv.path.is_ident("path")
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            return Some(file.parent()?.join(s.value()));
        }
    }
    [
        mod_dir.join(format!("{name}.rs")),
        mod_dir.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

pub fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(features: &[&str]) -> Cfg {
        Cfg {
            features: features.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    fn enabled(c: &Cfg, attrs: &str) -> bool {
        let item: Item = syn::parse_str(&format!("{attrs} fn f() {{}}")).unwrap();
        c.enabled(item_attrs(&item))
    }

    #[test]
    fn cfg_expressions() {
        let c = cfg(&["tokio"]);
        assert!(!enabled(&c, "#[cfg(test)]"));
        assert!(enabled(&c, "#[cfg(not(test))]"));
        assert!(enabled(&c, "#[cfg(feature = \"tokio\")]"));
        assert!(!enabled(&c, "#[cfg(feature = \"blocking\")]"));
        assert!(enabled(&c, "#[cfg(any(test, feature = \"tokio\"))]"));
        assert!(!enabled(&c, "#[cfg(all(unix, test))]"));
        assert!(enabled(&c, "#[cfg(target_os = \"linux\")] #[inline]"));
    }

    #[test]
    fn walks_modules_and_skips_test_items() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(
            src.join("lib.rs"),
            "mod a;\n#[cfg(test)]\nmod tests;\n#[cfg(feature = \"x\")]\nmod gated;\nfn f() {}\n\
             #[cfg(test)]\nmod inline {\n    fn t() {}\n}\n",
        )
        .unwrap();
        std::fs::write(src.join("a.rs"), "mod b;\n").unwrap();
        std::fs::write(src.join("a/b.rs"), "fn g() {}\n").unwrap();
        std::fs::write(src.join("tests.rs"), "fn never() {}\n").unwrap();
        std::fs::write(src.join("gated.rs"), "fn gated() {}\n").unwrap();

        let files = walk(&src.join("lib.rs"), &cfg(&[])).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.path.strip_prefix(&src).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["lib.rs", "a.rs", "a/b.rs"]);
        let lib = &files[0];
        assert!(lib.is_excluded(2) && lib.is_excluded(3));
        assert!(lib.is_excluded(7) && lib.is_excluded(10));
        assert!(!lib.is_excluded(6));

        let with_x = walk(&src.join("lib.rs"), &cfg(&["x"])).unwrap();
        assert!(with_x.iter().any(|f| f.path.ends_with("gated.rs")));
    }
}
