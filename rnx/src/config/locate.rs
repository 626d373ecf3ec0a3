//! Where `rnx-config.yml` is looked for, in order.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::ConfigError;

pub const FILE_NAME: &str = "rnx-config.yml";
pub const ENV_VAR: &str = "RNX_CONFIG";

/// The places searched when neither `--config` nor `$RNX_CONFIG` is given, in order:
/// ours first (`~/.rnx`), then Joblet's other documented locations.
pub fn search_path(home: Option<&Path>) -> Vec<PathBuf> {
    let mut paths = Vec::with_capacity(5);
    if let Some(home) = home {
        paths.push(home.join(".rnx").join(FILE_NAME));
    }
    paths.push(Path::new(".").join(FILE_NAME));
    paths.push(Path::new(".").join("config").join(FILE_NAME));
    paths.push(PathBuf::from("/etc/joblet").join(FILE_NAME));
    paths.push(PathBuf::from("/opt/joblet/config").join(FILE_NAME));
    paths
}

/// The search order as shown by `rnx config-help` and in "not found" errors.
pub fn describe_search_order() -> Vec<String> {
    let mut order = vec!["--config FILE".to_string(), format!("${ENV_VAR}")];
    order.push(format!("~/.rnx/{FILE_NAME}"));
    order.extend(
        search_path(None)
            .iter()
            .map(|p| p.to_string_lossy().into_owned()),
    );
    order
}

/// Picks the config file: `--config`, then `$RNX_CONFIG`, then the first existing file on
/// the search path. A file named explicitly (flag or variable) must exist: silently falling
/// back to another file would connect with credentials the user did not choose.
pub fn locate(
    explicit: Option<&Path>,
    env_value: Option<OsString>,
    home: Option<&Path>,
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return if exists(path) {
            Ok(path.to_path_buf())
        } else {
            Err(ConfigError::ExplicitMissing {
                path: path.to_path_buf(),
                origin: "--config",
            })
        };
    }
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if exists(&path) {
            Ok(path)
        } else {
            Err(ConfigError::ExplicitMissing {
                path,
                origin: "$RNX_CONFIG",
            })
        };
    }
    let candidates = search_path(home);
    if let Some(found) = candidates.iter().find(|p| exists(p)) {
        return Ok(found.clone());
    }
    Err(ConfigError::NotFound {
        looked_in: candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> PathBuf {
        PathBuf::from("/home/u")
    }

    #[test]
    fn explicit_flag_wins_over_everything() {
        let got = locate(
            Some(Path::new("/x/flag.yml")),
            Some("/x/env.yml".into()),
            Some(&home()),
            |_| true,
        )
        .unwrap();
        assert_eq!(got, PathBuf::from("/x/flag.yml"));
    }

    #[test]
    fn explicit_flag_that_does_not_exist_is_an_error_not_a_fallback() {
        let err = locate(Some(Path::new("/x/flag.yml")), None, Some(&home()), |p| {
            p != Path::new("/x/flag.yml")
        })
        .unwrap_err();
        assert!(err.to_string().contains("/x/flag.yml"), "{err}");
        assert!(err.to_string().contains("--config"), "{err}");
    }

    #[test]
    fn env_var_comes_second() {
        let got = locate(None, Some("/x/env.yml".into()), Some(&home()), |_| true).unwrap();
        assert_eq!(got, PathBuf::from("/x/env.yml"));
        let err = locate(None, Some("/x/env.yml".into()), Some(&home()), |_| false).unwrap_err();
        assert!(err.to_string().contains("$RNX_CONFIG"), "{err}");
    }

    #[test]
    fn empty_env_var_is_ignored() {
        let got = locate(None, Some("".into()), Some(&home()), |_| true).unwrap();
        assert_eq!(got, home().join(".rnx").join(FILE_NAME));
    }

    #[test]
    fn home_file_comes_before_the_working_directory_and_system_files() {
        let got = locate(None, None, Some(&home()), |_| true).unwrap();
        assert_eq!(got, home().join(".rnx/rnx-config.yml"));
        let got = locate(None, None, Some(&home()), |p| !p.starts_with("/home")).unwrap();
        assert_eq!(got, Path::new(".").join("rnx-config.yml"));
        let got = locate(None, None, Some(&home()), |p| p.starts_with("/opt")).unwrap();
        assert_eq!(got, PathBuf::from("/opt/joblet/config/rnx-config.yml"));
    }

    #[test]
    fn search_order_is_the_documented_one() {
        let order = search_path(Some(&home()));
        let order: Vec<String> = order.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            order,
            [
                home().join(".rnx").join(FILE_NAME).display().to_string(),
                Path::new(".").join(FILE_NAME).display().to_string(),
                Path::new(".")
                    .join("config")
                    .join(FILE_NAME)
                    .display()
                    .to_string(),
                "/etc/joblet/rnx-config.yml".to_string(),
                "/opt/joblet/config/rnx-config.yml".to_string(),
            ]
        );
    }

    #[test]
    fn not_found_lists_every_place_looked_in() {
        let err = locate(None, None, Some(&home()), |_| false).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("config: rnx-config.yml not found; looked in "));
        for place in search_path(Some(&home())) {
            assert!(text.contains(&place.display().to_string()), "{text}");
        }
    }
}
