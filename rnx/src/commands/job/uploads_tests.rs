use super::*;

fn collect(uploads: &[PathBuf], dirs: &[PathBuf]) -> Result<Vec<FileUpload>, UploadError> {
    read(plan(uploads, dirs)?, |_| {})
}

#[test]
fn files_go_by_base_name_and_directories_by_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script.py");
    fs::write(&file, b"print(1)").unwrap();
    let tree = dir.path().join("proj");
    fs::create_dir_all(tree.join("src")).unwrap();
    fs::write(tree.join("main.py"), b"m").unwrap();
    fs::write(tree.join("src").join("lib.py"), b"l").unwrap();

    let p = plan(&[file, tree], &[]).unwrap();
    assert_eq!((p.total_bytes, p.file_count()), (10, 3));
    let files = read(p, |_| {}).unwrap();
    let got: Vec<(&str, bool)> = files
        .iter()
        .map(|f| (f.path.as_str(), f.is_directory))
        .collect();
    assert_eq!(
        got,
        [
            ("script.py", false),
            ("main.py", false),
            ("src", true),
            ("src/lib.py", false)
        ]
    );
    assert_eq!(files[0].content, b"print(1)");
    assert_eq!(files[3].content, b"l");
}

#[test]
fn progress_counts_every_byte_read() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    fs::write(&big, vec![1u8; 3 * READ_CHUNK + 17]).unwrap();
    let small = dir.path().join("small.txt");
    fs::write(&small, b"abc").unwrap();
    let p = plan(&[big, small], &[]).unwrap();
    let total = p.total_bytes;
    let mut seen = Vec::new();
    let files = read(p, |n| seen.push(n)).unwrap();
    assert_eq!(files[0].content.len(), 3 * READ_CHUNK + 17);
    assert_eq!(seen.last().copied(), Some(total));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen.len() >= 5, "read in chunks: {seen:?}");
}

#[test]
fn clashing_targets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["a", "b"] {
        fs::create_dir(dir.path().join(sub)).unwrap();
        fs::write(dir.path().join(sub).join("same.txt"), b"x").unwrap();
    }
    let err = plan(
        &[dir.path().join("a/same.txt"), dir.path().join("b/same.txt")],
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("same.txt"), "{err}");
}

#[test]
fn missing_paths_and_non_directories_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let err = plan(&[dir.path().join("nope")], &[]).unwrap_err();
    assert!(
        err.to_string().starts_with("--upload: cannot read"),
        "{err}"
    );
    let file = dir.path().join("f");
    fs::write(&file, b"x").unwrap();
    let err = plan(&[], &[file]).unwrap_err();
    assert!(err.to_string().starts_with("--upload-dir:"), "{err}");
}

#[test]
fn the_total_is_checked_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.img");
    let f = fs::File::create(&huge).unwrap();
    // Sparse: the size is what counts, and nothing is read to find it.
    f.set_len(MAX_TOTAL_BYTES + 1).unwrap();
    let err = plan(&[huge], &[]).unwrap_err();
    assert!(matches!(err, UploadError::TooLarge), "{err}");
    assert!(err.to_string().contains("100 MiB"), "{err}");
}

#[test]
fn paths_outside_the_tree_never_become_targets() {
    // `..` and absolute paths on the command line name local files; in the workspace they
    // are only ever base names or paths relative to the named directory.
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("inner");
    fs::create_dir(&inner).unwrap();
    fs::write(dir.path().join("up.txt"), b"u").unwrap();
    let dotted = inner.join("..").join("up.txt");
    let files = collect(&[dotted, dir.path().join("up.txt")], &[]);
    // Both name the same file, so both would land at `up.txt`: refused as a clash.
    assert!(matches!(files, Err(UploadError::Duplicate { .. })));
    let files = collect(&[inner.join("..").join("up.txt")], &[]).unwrap();
    assert_eq!(files[0].path, "up.txt");
    let files = collect(&[inner.join("..")], &[]).unwrap();
    assert!(
        files
            .iter()
            .all(|f| !f.path.starts_with('/') && !f.path.split('/').any(|c| c == ".." || c == ".")),
        "{:?}",
        files.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
}

#[cfg(unix)]
mod unix {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn only_permission_bits_travel() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir(&tree).unwrap();
        let tool = tree.join("tool");
        fs::write(&tool, b"#!/bin/sh").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o4755)).unwrap();
        let files = collect(&[], &[tree]).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].path.as_str(), files[0].mode), ("tool", 0o755));
    }

    #[test]
    fn links_inside_the_tree_are_copied_and_directory_links_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("real.txt"), b"real").unwrap();
        symlink("real.txt", tree.join("alias.txt")).unwrap();
        symlink("sub", tree.join("loop")).unwrap();
        let p = plan(&[], &[tree]).unwrap();
        assert!(p.notes.iter().any(|n| n.contains("loop")), "{:?}", p.notes);
        let files = read(p, |_| {}).unwrap();
        let alias = files.iter().find(|f| f.path == "alias.txt").unwrap();
        assert_eq!(alias.content, b"real");
        assert!(!files.iter().any(|f| f.path.starts_with("loop")));
    }

    #[test]
    fn links_leading_out_or_nowhere_are_refused_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir(&tree).unwrap();
        fs::write(dir.path().join("secret"), b"s").unwrap();
        symlink("../secret", tree.join("escape")).unwrap();
        let err = plan(&[], std::slice::from_ref(&tree)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, UploadError::LinkOutside { .. }), "{text}");
        assert!(text.starts_with("--upload-dir: refusing "), "{text}");
        assert!(text.contains("escape"), "{text}");

        fs::remove_file(tree.join("escape")).unwrap();
        symlink("/nonexistent/x", tree.join("dangling")).unwrap();
        let err = plan(&[tree], &[]).unwrap_err();
        assert!(matches!(err, UploadError::LinkDangling { .. }), "{err}");
        assert!(err.to_string().contains("dangling"), "{err}");
    }

    #[test]
    fn special_files_are_refused_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir(&tree).unwrap();
        let sock = tree.join("app.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let err = plan(&[], &[tree]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("app.sock") && text.contains("socket"),
            "{text}"
        );
        let err = plan(&[PathBuf::from("/dev/null")], &[]).unwrap_err();
        assert!(err.to_string().contains("device"), "{err}");
    }
}
