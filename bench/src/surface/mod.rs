//! The privileged surface of the spawner and the supervisor, for auditors: lines of Rust
//! without tests, `unsafe` blocks and their `// SAFETY:` comments, the crates linked, the
//! request types accepted, and seccomp.
//!
//! How lines are counted: the source files are those of the binary's module tree (crate
//! root, `mod x;` followed), as a normal build compiles them: items under `#[cfg(test)]` (and
//! under features not enabled) are left out with all their lines; of the rest, a line counts
//! if it holds anything but whitespace outside comments (doc comments are comments). The
//! workspace's own library crates linked into the binary (ipc-proto) are counted apart, with
//! the features the binary enables.

pub mod deps;
pub mod lines;
pub mod modtree;
pub mod render;
pub mod requests;
pub mod seccomp;
pub mod unsafe_scan;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use deps::Linked;
use modtree::{Cfg, SourceFile};
use requests::Request;
use seccomp::Seccomp;
use unsafe_scan::UnsafeReport;

#[derive(Debug, thiserror::Error)]
pub enum SurfaceError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("{what} failed: {reason}")]
    Cargo { what: String, reason: String },
    #[error("package {package} has no binary {binary}")]
    NoBinary { package: String, binary: String },
}

/// What a privileged binary accepts from other processes.
#[derive(Debug, Clone, Copy)]
pub enum Accepts {
    /// The variants of a request enum in the IPC contract.
    Channel {
        file: &'static str,
        enum_name: &'static str,
    },
    /// No request channel; what its inputs are instead.
    Nothing(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub binary: &'static str,
    pub package: &'static str,
    pub accepts: Accepts,
}

/// The privileged binaries: the spawner (root) and the supervisor (root, starts the rest).
pub const TARGETS: &[Target] = &[
    Target {
        binary: "joblet-spawner",
        package: "joblet-spawner",
        accepts: Accepts::Channel {
            file: "ipc-proto/src/channel/spawner.rs",
            enum_name: "SpawnerRequest",
        },
    },
    Target {
        binary: "joblet",
        package: "joblet-supervisor",
        accepts: Accepts::Nothing(
            "no request channel: it creates the helpers' listening sockets and hands them \
             over without reading them; its inputs are joblet-config.yml (root-owned YAML), \
             its command line, signals and its children's exits",
        ),
    },
];

/// The code of one crate as compiled into a binary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CrateCode {
    pub name: String,
    pub files: usize,
    pub lines: usize,
    pub features: Vec<String>,
    #[serde(rename = "unsafe")]
    pub unsafe_code: UnsafeReport,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BinaryReport {
    pub binary: String,
    pub package: String,
    /// The package itself first, then the workspace crates it links.
    pub code: Vec<CrateCode>,
    pub linked: Vec<Linked>,
    pub proc_macros: Vec<String>,
    pub requests: Vec<Request>,
    pub accepts_note: Option<String>,
    pub seccomp: Seccomp,
}

impl BinaryReport {
    pub fn own(&self) -> &CrateCode {
        &self.code[0]
    }
}

pub fn report(workspace: &Path) -> Result<Vec<BinaryReport>, SurfaceError> {
    TARGETS
        .iter()
        .map(|t| binary_report(workspace, t))
        .collect()
}

fn binary_report(ws: &Path, t: &Target) -> Result<BinaryReport, SurfaceError> {
    let pkg = deps::package(ws, t.package)?;
    let bin = pkg
        .bins
        .get(t.binary)
        .ok_or_else(|| SurfaceError::NoBinary {
            package: t.package.into(),
            binary: t.binary.into(),
        })?;
    let tree = deps::tree(ws, t.package)?;
    let own_cfg = Cfg {
        features: tree.root_features.iter().cloned().collect(),
    };
    let roots: Vec<&Path> = pkg
        .lib
        .iter()
        .map(PathBuf::as_path)
        .chain([bin.as_path()])
        .collect();
    let own_files = files_of(&roots, &own_cfg)?;
    let mut code = vec![count(ws, t.package, &own_files, &own_cfg)];
    for l in tree.linked.iter().filter(|l| l.path.is_some()) {
        let dir = l.path.as_deref().unwrap_or(Path::new("."));
        let cfg = Cfg {
            features: l.features.iter().cloned().collect(),
        };
        let files = files_of(&[&dir.join("src/lib.rs")], &cfg)?;
        code.push(count(ws, &l.name, &files, &cfg));
    }
    let named: Vec<(String, &SourceFile)> = own_files
        .iter()
        .map(|f| (display(ws, &f.path), f))
        .collect();
    let (requests, accepts_note) = match t.accepts {
        Accepts::Channel { file, enum_name } => {
            (requests::variants(&ws.join(file), enum_name)?, None)
        }
        Accepts::Nothing(why) => (Vec::new(), Some(why.to_owned())),
    };
    Ok(BinaryReport {
        binary: t.binary.into(),
        package: t.package.into(),
        code,
        linked: tree.linked,
        proc_macros: tree.proc_macros,
        requests,
        accepts_note,
        seccomp: seccomp::scan(&named),
    })
}

/// The files of every root's tree, each once.
fn files_of(roots: &[&Path], cfg: &Cfg) -> Result<Vec<SourceFile>, SurfaceError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in roots {
        for f in modtree::walk(r, cfg)? {
            if seen.insert(f.path.clone()) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

fn count(ws: &Path, name: &str, files: &[SourceFile], cfg: &Cfg) -> CrateCode {
    let mut lines = 0;
    let mut unsafe_code = UnsafeReport::default();
    for f in files {
        let classified = lines::classify(&f.text);
        lines += classified
            .iter()
            .enumerate()
            .filter(|(i, l)| l.code && !f.is_excluded(i + 1))
            .count();
        unsafe_code.merge(unsafe_scan::scan(
            f,
            &classified,
            cfg,
            &display(ws, &f.path),
        ));
    }
    CrateCode {
        name: name.to_owned(),
        files: files.len(),
        lines,
        features: cfg.features.iter().cloned().collect(),
        unsafe_code,
    }
}

fn display(ws: &Path, p: &Path) -> String {
    p.strip_prefix(ws).unwrap_or(p).display().to_string()
}
