//! Where the system's binaries are: next to this program by default (`cargo build --release
//! --bins` puts them all in `target/release`), or a directory given on the command line.

use std::path::{Path, PathBuf};

/// Every binary a benchmark run starts, directly or through the supervisor.
pub const REQUIRED: &[&str] = &[
    "joblet",
    "joblet-spawner",
    "joblet-api",
    "joblet-persistd",
    "joblet-stated",
    "rnx",
];

#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    #[error("cannot tell where this program is: {0}")]
    CurrentExe(std::io::Error),
    #[error(
        "{} not found in {}: build the system first with `cargo build --release --bins` \
         (or pass --bin-dir)",
        missing.join(", "),
        dir.display()
    )]
    Missing { dir: PathBuf, missing: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// `explicit`, else the directory of the running executable; checks every binary is there.
    pub fn locate(explicit: Option<PathBuf>) -> Result<Binaries, BinariesError> {
        let dir = match explicit {
            Some(d) => d,
            None => std::env::current_exe()
                .map_err(BinariesError::CurrentExe)?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        let missing: Vec<String> = REQUIRED
            .iter()
            .filter(|b| !dir.join(b).is_file())
            .map(|b| (*b).to_owned())
            .collect();
        if missing.is_empty() {
            Ok(Binaries { dir })
        } else {
            Err(BinariesError::Missing { dir, missing })
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn joblet(&self) -> PathBuf {
        self.dir.join("joblet")
    }

    pub fn rnx(&self) -> PathBuf {
        self.dir.join("rnx")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_the_binaries_is_refused_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("joblet"), b"").unwrap();
        let err = Binaries::locate(Some(dir.path().to_path_buf())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("rnx") && text.contains("joblet-spawner"));
        assert!(!text.contains("joblet,"), "present binary listed: {text}");
    }

    #[test]
    fn a_complete_directory_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        for b in REQUIRED {
            std::fs::write(dir.path().join(b), b"").unwrap();
        }
        let bins = Binaries::locate(Some(dir.path().to_path_buf())).unwrap();
        assert_eq!(bins.rnx(), dir.path().join("rnx"));
    }
}
