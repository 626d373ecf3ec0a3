//! `joblet init --dir DIR`: a working development configuration with every path inside DIR:
//! the server config with embedded certificates, the runtime config, the CA key, and one rnx
//! client config per role. Existing files are never overwritten without `--force`, and nothing
//! is written unless everything was generated and the config parses back.

pub mod certs;
pub mod ids;
pub mod render;

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use render::Instance;

pub const DEFAULT_ADDRESS: &str = "127.0.0.1:50051";

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("--address {0:?}: expected HOST:PORT, e.g. 127.0.0.1:50051 or [::1]:50051")]
    Address(String),
    #[error("refusing to overwrite existing files (use --force to replace them): {}", list(.0))]
    Exists(Vec<PathBuf>),
    #[error("{path}: {step} failed: {source}")]
    Io {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ids(#[from] ids::IdsExhausted),
    #[error(transparent)]
    Certs(#[from] certs::CertError),
    #[error("the generated config does not validate (a bug in joblet init): {0}")]
    Generated(crate::config::ConfigError),
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// `HOST:PORT` to listen on; [`DEFAULT_ADDRESS`] when `None`.
    pub address: Option<String>,
    pub force: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub runtime_config: PathBuf,
    pub ca_key: PathBuf,
    pub rnx_admin: PathBuf,
    pub rnx_viewer: PathBuf,
    pub ids: ids::HelperIds,
}

impl InitReport {
    pub fn files(&self) -> [&Path; 5] {
        [
            &self.config,
            &self.runtime_config,
            &self.ca_key,
            &self.rnx_admin,
            &self.rnx_viewer,
        ]
    }
}

pub fn init(opts: &InitOptions) -> Result<InitReport, InitError> {
    let address = opts.address.as_deref().unwrap_or(DEFAULT_ADDRESS);
    let (host, port) =
        split_host_port(address).ok_or_else(|| InitError::Address(address.into()))?;
    let dir = instance_dir(&opts.dir)?;
    let config_dir = dir.join("config");
    let report = InitReport {
        config: config_dir.join("joblet-config.yml"),
        runtime_config: config_dir.join("runtime-config.yml"),
        ca_key: config_dir.join("ca-key.pem"),
        rnx_admin: config_dir.join("rnx-admin.yml"),
        rnx_viewer: config_dir.join("rnx-viewer.yml"),
        ids: ids::choose()?,
        dir,
    };
    let existing: Vec<PathBuf> = report
        .files()
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(|p| p.to_path_buf())
        .collect();
    if !existing.is_empty() && !opts.force {
        return Err(InitError::Exists(existing));
    }

    let pki = certs::generate(&host)?;
    let node_id = node_id();
    let instance = Instance {
        dir: &report.dir,
        host: &host,
        port,
        node_id: &node_id,
        cgroup_base: &cgroup_base(&report.dir),
        ids: &report.ids,
        pki: &pki,
    };
    let config = render::joblet_config(&instance);
    crate::config::from_str(&config).map_err(InitError::Generated)?;
    let client_address = client_address(&host, port);
    let contents = [
        (&report.config, config),
        (&report.runtime_config, render::runtime_config(&report.dir)),
        (&report.ca_key, pki.ca.key.clone()),
        (
            &report.rnx_admin,
            render::rnx_config("admin", &client_address, &node_id, &pki.admin, &pki.ca),
        ),
        (
            &report.rnx_viewer,
            render::rnx_config("viewer", &client_address, &node_id, &pki.viewer, &pki.ca),
        ),
    ];
    private_dir(&config_dir)?;
    write_all_or_nothing(&contents)?;
    Ok(report)
}

/// Splits `HOST:PORT` (`[v6]:PORT` for IPv6); the port must not be 0, clients need to know it.
pub fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        (host, port)
    } else {
        let (host, port) = address.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    valid_host.then(|| (host.to_owned(), port))
}

/// Where clients connect: a wildcard listening address means this host's loopback.
fn client_address(host: &str, port: u16) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv6() => format!("[::1]:{port}"),
        Ok(ip) if ip.is_unspecified() => format!("127.0.0.1:{port}"),
        Ok(ip) if ip.is_ipv6() => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// The instance directory, created (0755: the helpers' users must be able to pass through)
/// and made absolute.
fn instance_dir(dir: &Path) -> Result<PathBuf, InitError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|source| InitError::Io {
            path: dir.to_owned(),
            step: "creating the directory",
            source,
        })?;
    std::fs::canonicalize(dir).map_err(|source| InitError::Io {
        path: dir.to_owned(),
        step: "resolving the path",
        source,
    })
}

fn private_dir(dir: &Path) -> Result<(), InitError> {
    let io = |step| {
        move |source| InitError::Io {
            path: dir.to_owned(),
            step,
            source,
        }
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir).map_err(io("stat"))?;
            if !meta.is_dir() {
                return Err(io("using as a directory")(std::io::Error::other(
                    "exists and is not a directory",
                )));
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io("chmod 0700"))
        }
        Err(e) => Err(io("mkdir")(e)),
    }
}

/// Writes every file to a temporary name (mode 0600 from creation), then renames them all into
/// place; on any failure the temporary files are removed and nothing is replaced.
fn write_all_or_nothing(files: &[(&PathBuf, String)]) -> Result<(), InitError> {
    let mut temps: Vec<(PathBuf, &PathBuf)> = Vec::new();
    let cleanup = |temps: &[(PathBuf, &PathBuf)]| {
        for (t, _) in temps {
            let _ = std::fs::remove_file(t);
        }
    };
    for (path, text) in files {
        let temp = path.with_extension(format!("tmp-{}", std::process::id()));
        if let Err(e) = write_new(&temp, text) {
            cleanup(&temps);
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        temps.push((temp, path));
    }
    for (temp, path) in &temps {
        if let Err(source) = std::fs::rename(temp, path) {
            cleanup(&temps);
            return Err(InitError::Io {
                path: (*path).clone(),
                step: "renaming into place",
                source,
            });
        }
    }
    Ok(())
}

fn write_new(path: &Path, text: &str) -> Result<(), InitError> {
    let io = |step| {
        move |source| InitError::Io {
            path: path.to_owned(),
            step,
            source,
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io("creating"))?;
    f.write_all(text.as_bytes()).map_err(io("writing"))?;
    f.sync_all().map_err(io("syncing"))
}

/// A fresh node id, a UUID from the kernel as Joblet's setup does it.
fn node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| format!("joblet-{}", std::process::id()))
}

/// `joblet-<8 hex>`: unique per instance directory, so two dev instances on one host do not
/// share a cgroup subtree.
pub fn cgroup_base(dir: &Path) -> String {
    // FNV-1a: stable across builds and platforms, no dependency for eight hex digits.
    let mut hash: u32 = 0x811c_9dc5;
    for b in dir.as_os_str().as_encoded_bytes() {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("joblet-{hash:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_like_clients_write_them() {
        assert_eq!(
            split_host_port("127.0.0.1:50051"),
            Some(("127.0.0.1".into(), 50051))
        );
        assert_eq!(split_host_port("[::1]:7"), Some(("::1".into(), 7)));
        assert_eq!(
            split_host_port("build.example:443"),
            Some(("build.example".into(), 443))
        );
        for bad in [
            "127.0.0.1",
            "::1:5",
            "host:0",
            "host:99999",
            ":5",
            "a b:5",
            "[::1]5",
        ] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn clients_reach_wildcards_through_loopback() {
        assert_eq!(client_address("0.0.0.0", 5), "127.0.0.1:5");
        assert_eq!(client_address("::", 5), "[::1]:5");
        assert_eq!(client_address("::1", 5), "[::1]:5");
        assert_eq!(client_address("10.0.0.2", 5), "10.0.0.2:5");
        assert_eq!(client_address("build.example", 5), "build.example:5");
    }

    #[test]
    fn cgroup_base_is_stable_and_per_directory() {
        let a = cgroup_base(Path::new("/srv/a"));
        assert_eq!(a, cgroup_base(Path::new("/srv/a")));
        assert_ne!(a, cgroup_base(Path::new("/srv/b")));
        assert!(a.starts_with("joblet-") && a.len() == 15, "{a}");
    }
}
