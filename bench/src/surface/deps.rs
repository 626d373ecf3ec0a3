//! What a package is made of, from cargo: its targets (`cargo metadata --no-deps`) and the
//! crates linked into it with their enabled features (`cargo tree -e normal`). Proc-macro
//! crates and what they use run at compile time only, so they are listed apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::SurfaceError;

/// A crate linked into a binary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Linked {
    pub name: String,
    pub version: String,
    /// Set for path dependencies (the workspace's own crates).
    pub path: Option<PathBuf>,
    pub features: Vec<String>,
    /// A dependency the package names itself (depth 1).
    pub direct: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Tree {
    /// Features enabled on the package itself.
    pub root_features: Vec<String>,
    pub linked: Vec<Linked>,
    pub proc_macros: Vec<String>,
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(cmd: &mut Command, what: &str) -> Result<String, SurfaceError> {
    let out = cmd.output().map_err(|e| SurfaceError::Cargo {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(SurfaceError::Cargo {
            what: what.to_owned(),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo tree -p PACKAGE -e normal`, parsed.
pub fn tree(workspace: &Path, package: &str) -> Result<Tree, SurfaceError> {
    let text = run(
        cargo()
            .arg("tree")
            .arg("--manifest-path")
            .arg(workspace.join("Cargo.toml"))
            .args(["-p", package, "-e", "normal", "--prefix", "depth"])
            .args(["-f", "{p}|{f}"]),
        &format!("cargo tree -p {package}"),
    )?;
    Ok(parse_tree(&text))
}

fn parse_tree(text: &str) -> Tree {
    let mut linked: BTreeMap<(String, String), Linked> = BTreeMap::new();
    let mut macros = BTreeSet::new();
    let mut root_features = Vec::new();
    // Depth of the proc-macro whose subtree we are in, if any.
    let mut in_macro: Option<usize> = None;
    for line in text.lines() {
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue;
        };
        if in_macro.is_some_and(|d| depth > d) {
            continue;
        }
        in_macro = None;
        let (pkg, features) = line[digits..]
            .split_once('|')
            .unwrap_or((&line[digits..], ""));
        let mut words = pkg.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let rest: Vec<&str> = words.collect();
        if rest.contains(&"(proc-macro)") {
            macros.insert(name.to_owned());
            in_macro = Some(depth);
            continue;
        }
        let features: Vec<String> = features
            .trim_end_matches("(*)")
            .trim()
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        if depth == 0 {
            root_features = features;
            continue;
        }
        let path = rest
            .iter()
            .find(|w| w.starts_with("(/"))
            .map(|w| PathBuf::from(w.trim_matches(|c| c == '(' || c == ')')));
        let entry = linked
            .entry((name.to_owned(), version.to_owned()))
            .or_insert_with(|| Linked {
                name: name.to_owned(),
                version: version.trim_start_matches('v').to_owned(),
                path,
                features,
                direct: false,
            });
        entry.direct |= depth == 1;
    }
    Tree {
        root_features,
        linked: linked.into_values().collect(),
        proc_macros: macros.into_iter().collect(),
    }
}

/// A package's targets.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub lib: Option<PathBuf>,
    pub bins: BTreeMap<String, PathBuf>,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetaPackage>,
}

#[derive(Deserialize)]
struct MetaPackage {
    name: String,
    targets: Vec<MetaTarget>,
}

#[derive(Deserialize)]
struct MetaTarget {
    name: String,
    kind: Vec<String>,
    src_path: PathBuf,
}

pub fn package(workspace: &Path, name: &str) -> Result<Package, SurfaceError> {
    let text = run(
        cargo()
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(workspace.join("Cargo.toml")),
        "cargo metadata",
    )?;
    let meta: Metadata = serde_json::from_str(&text).map_err(|e| SurfaceError::Cargo {
        what: "cargo metadata".into(),
        reason: e.to_string(),
    })?;
    let p = meta
        .packages
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| SurfaceError::Cargo {
            what: "cargo metadata".into(),
            reason: format!("no package {name} in the workspace"),
        })?;
    let mut lib = None;
    let mut bins = BTreeMap::new();
    for t in p.targets {
        if t.kind.iter().any(|k| k == "lib" || k == "rlib") {
            lib = Some(t.src_path);
        } else if t.kind.iter().any(|k| k == "bin") {
            bins.insert(t.name, t.src_path);
        }
    }
    Ok(Package {
        name: p.name,
        lib,
        bins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = "0joblet-spawner v0.1.0 (/w/spawner)|\n\
        1joblet-ipc-proto v0.1.0 (/w/ipc-proto)|blocking,default\n\
        2libc v0.2.191|default,std\n\
        2thiserror v2.0.21|default,std\n\
        3thiserror-impl v2.0.21 (proc-macro)|\n\
        4proc-macro2 v1.0.107|default,proc-macro\n\
        4syn v3.0.10|full\n\
        1libc v0.2.191|default,std (*)\n\
        1nix v0.31.3|fs,user\n";

    #[test]
    fn linked_crates_without_proc_macros() {
        let t = parse_tree(TREE);
        let names: Vec<&str> = t.linked.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["joblet-ipc-proto", "libc", "nix", "thiserror"]);
        assert_eq!(t.proc_macros, ["thiserror-impl"]);
        let ipc = &t.linked[0];
        assert_eq!(ipc.path.as_deref(), Some(Path::new("/w/ipc-proto")));
        assert_eq!(ipc.features, ["blocking", "default"]);
        assert!(ipc.direct);
        let libc = &t.linked[1];
        assert!(libc.direct, "libc is also a direct dependency");
        assert_eq!(libc.version, "0.2.191");
        assert!(!t.linked[3].direct);
    }
}
