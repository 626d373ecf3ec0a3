//! Checking a RunJob's uploads before anything touches the disk: every path relative and
//! clean, no path twice, nothing under a path that is a file, the total within the limit.
//! The result is a plan the stager follows.

use std::collections::HashMap;

use joblet_api_proto::FileUpload;
use joblet_ipc_proto::validate;

use super::UploadError;

/// Most entries (files and directories) one job may upload.
pub const MAX_ENTRIES: usize = 100_000;
/// Bytes of upload paths recorded in the job's spec (shown by GetJobStatus); a larger tree
/// is recorded by its top-level entries. Keeps the record well inside one IPC frame.
pub const RECORDED_PATHS_BUDGET: usize = 16 * 1024;
/// Modes given as 0 take these (clients that do not send a mode).
pub const DEFAULT_FILE_MODE: u32 = 0o644;
pub const DEFAULT_DIR_MODE: u32 = 0o755;
/// Allocation unit the job's filesystem charges a file at least (tmpfs pages, ext4 blocks).
const BLOCK: u64 = 4096;
const MIB: u64 = 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    File { content: Vec<u8> },
    Dir,
}

/// One upload, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the work directory, validated (`src/main.py`).
    pub path: String,
    /// Permission bits only: setuid, setgid and sticky are dropped.
    pub mode: u32,
    pub kind: Kind,
}

impl Entry {
    pub fn depth(&self) -> usize {
        self.path.split('/').count()
    }
}

/// A job's checked uploads.
#[derive(Debug, Default)]
pub struct UploadPlan {
    pub entries: Vec<Entry>,
    /// Sum of the files' sizes.
    pub content_bytes: u64,
}

impl UploadPlan {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the uploads occupy on the job's filesystem, in MiB (rounded up): each file
    /// rounded up to a whole block, each directory one block.
    pub fn disk_mb(&self) -> u64 {
        let bytes: u64 = self
            .entries
            .iter()
            .map(|e| match &e.kind {
                Kind::File { content } => (content.len() as u64).div_ceil(BLOCK) * BLOCK,
                Kind::Dir => BLOCK,
            })
            .sum();
        bytes.div_ceil(MIB)
    }

    /// The paths to record for display: every file if they fit the budget, otherwise the
    /// distinct top-level entries (in the order first seen).
    pub fn recorded_paths(&self) -> Vec<String> {
        let files: Vec<String> = self
            .entries
            .iter()
            .filter(|e| matches!(e.kind, Kind::File { .. }))
            .map(|e| e.path.clone())
            .collect();
        if files.iter().map(String::len).sum::<usize>() <= RECORDED_PATHS_BUDGET {
            return files;
        }
        let mut top: Vec<String> = Vec::new();
        let mut used = 0usize;
        for e in &self.entries {
            let first = e.path.split('/').next().unwrap_or(&e.path);
            if top.iter().any(|t| t == first) {
                continue;
            }
            used += first.len();
            if used > RECORDED_PATHS_BUDGET {
                break;
            }
            top.push(first.to_owned());
        }
        top
    }
}

/// Checks `uploads` against the rules and `max_bytes`; the error names the offending path.
pub fn plan(uploads: Vec<FileUpload>, max_bytes: u64) -> Result<UploadPlan, UploadError> {
    if uploads.len() > MAX_ENTRIES {
        return Err(UploadError::TooMany {
            count: uploads.len(),
            max: MAX_ENTRIES,
        });
    }
    let mut content_bytes: u64 = 0;
    let mut entries = Vec::with_capacity(uploads.len());
    for u in uploads {
        validate::upload_path(&u.path).map_err(UploadError::Path)?;
        if u.is_directory && !u.content.is_empty() {
            return Err(UploadError::DirectoryWithContent(u.path));
        }
        content_bytes = content_bytes.saturating_add(u.content.len() as u64);
        if content_bytes > max_bytes {
            return Err(UploadError::TooLarge { max: max_bytes });
        }
        let (kind, default_mode) = if u.is_directory {
            (Kind::Dir, DEFAULT_DIR_MODE)
        } else {
            (Kind::File { content: u.content }, DEFAULT_FILE_MODE)
        };
        let mode = match u.mode & 0o777 {
            0 => default_mode,
            m => m,
        };
        entries.push(Entry {
            path: u.path,
            mode,
            kind,
        });
    }
    check_tree(&entries)?;
    Ok(UploadPlan {
        entries,
        content_bytes,
    })
}

/// No path twice; no entry below a path that is uploaded as a file.
fn check_tree(entries: &[Entry]) -> Result<(), UploadError> {
    let mut is_file: HashMap<&str, bool> = HashMap::with_capacity(entries.len());
    for e in entries {
        if is_file
            .insert(&e.path, matches!(e.kind, Kind::File { .. }))
            .is_some()
        {
            return Err(UploadError::Duplicate(e.path.clone()));
        }
    }
    for e in entries {
        for (i, _) in e.path.match_indices('/') {
            let ancestor = &e.path[..i];
            if is_file.get(ancestor) == Some(&true) {
                return Err(UploadError::InsideFile {
                    path: e.path.clone(),
                    file: ancestor.to_owned(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn file(path: &str, content: &[u8], mode: u32) -> FileUpload {
        FileUpload {
            path: path.into(),
            content: content.to_vec(),
            mode,
            is_directory: false,
        }
    }

    pub(crate) fn dir(path: &str, mode: u32) -> FileUpload {
        FileUpload {
            path: path.into(),
            content: Vec::new(),
            mode,
            is_directory: true,
        }
    }

    #[test]
    fn a_clean_tree_passes_with_modes_masked() {
        let p = plan(
            vec![
                dir("src", 0o750),
                file("src/main.py", b"print(1)", 0o4755),
                file("run.sh", b"#!/bin/sh", 0o2775),
                file("data.bin", b"", 0),
                dir("empty", 0o1777),
            ],
            1024,
        )
        .unwrap();
        let modes: Vec<(&str, u32)> = p
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.mode))
            .collect();
        assert_eq!(
            modes,
            [
                ("src", 0o750),
                ("src/main.py", 0o755),
                ("run.sh", 0o775),
                ("data.bin", DEFAULT_FILE_MODE),
                ("empty", 0o777),
            ]
        );
        assert_eq!(p.content_bytes, 17);
        assert_eq!(p.recorded_paths(), ["src/main.py", "run.sh", "data.bin"]);
    }

    #[test]
    fn hostile_paths_are_refused_by_name() {
        for bad in ["/etc/x", "../x", "a/../../x", "a//b", "./a", "a/.", ""] {
            let e = plan(vec![file(bad, b"x", 0o644)], 1024).unwrap_err();
            assert!(matches!(e, UploadError::Path(_)), "{bad:?}: {e}");
            if !bad.is_empty() {
                assert!(e.to_string().contains(bad), "{bad:?} not named in {e}");
            }
        }
    }

    #[test]
    fn duplicates_and_files_under_files_are_refused() {
        let e = plan(vec![file("a", b"1", 0), file("a", b"2", 0)], 1024).unwrap_err();
        assert!(
            e.to_string().contains("\"a\"") && e.to_string().contains("twice"),
            "{e}"
        );
        let e = plan(vec![dir("a", 0), file("a", b"2", 0)], 1024).unwrap_err();
        assert!(matches!(e, UploadError::Duplicate(_)), "{e}");
        for order in [
            vec![file("a", b"1", 0), file("a/b/c", b"2", 0)],
            vec![file("a/b/c", b"2", 0), file("a", b"1", 0)],
        ] {
            let e = plan(order, 1024).unwrap_err();
            assert!(
                matches!(&e, UploadError::InsideFile { path, file } if path == "a/b/c" && file == "a"),
                "{e}"
            );
        }
        // A sibling whose name extends a file's name is not inside it.
        assert!(plan(vec![file("a", b"1", 0), file("a-b/c", b"2", 0)], 1024).is_ok());
    }

    #[test]
    fn size_and_count_limits() {
        let e = plan(vec![file("a", &[0; 600], 0), file("b", &[0; 600], 0)], 1000).unwrap_err();
        assert!(matches!(e, UploadError::TooLarge { max: 1000 }), "{e}");
        assert!(plan(vec![file("a", &[0; 1000], 0)], 1000).is_ok());
        let many: Vec<FileUpload> = (0..=MAX_ENTRIES)
            .map(|i| file(&format!("f{i}"), b"", 0))
            .collect();
        assert!(matches!(
            plan(many, 1 << 20),
            Err(UploadError::TooMany { .. })
        ));
        let e = plan(
            vec![FileUpload {
                is_directory: true,
                ..file("d", b"x", 0)
            }],
            10,
        )
        .unwrap_err();
        assert!(matches!(e, UploadError::DirectoryWithContent(_)), "{e}");
    }

    #[test]
    fn disk_charge_counts_blocks() {
        let p = plan(vec![file("a", b"x", 0), dir("d", 0)], 10).unwrap();
        assert_eq!(p.disk_mb(), 1, "two blocks round up to one MiB");
        let p = plan(vec![file("big", &vec![0; 3 * 1024 * 1024 + 1], 0)], 1 << 30).unwrap();
        assert_eq!(p.disk_mb(), 4);
        let many: Vec<FileUpload> = (0..512).map(|i| file(&format!("f{i}"), b"x", 0)).collect();
        assert_eq!(
            plan(many, 1 << 20).unwrap().disk_mb(),
            2,
            "512 tiny files take 2 MiB"
        );
        assert_eq!(UploadPlan::default().disk_mb(), 0);
    }

    #[test]
    fn a_huge_tree_is_recorded_by_its_top_level() {
        let uploads: Vec<FileUpload> = (0..2000)
            .map(|i| file(&format!("pkg/module_{i:04}/file.py"), b"", 0))
            .chain([file("main.py", b"", 0)])
            .collect();
        let p = plan(uploads, 1 << 20).unwrap();
        assert_eq!(p.recorded_paths(), ["pkg", "main.py"]);
    }
}
