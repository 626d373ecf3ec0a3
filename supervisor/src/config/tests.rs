use std::path::PathBuf;
use std::time::Duration;

use joblet_ipc_proto::settings::LogFormat;

use super::*;

mod settings;

const PEMS: &str = r#"
security:
  serverCert: |
    -----BEGIN CERTIFICATE-----
    MIIB
    -----END CERTIFICATE-----
  serverKey: |
    -----BEGIN PRIVATE KEY-----
    MIIB
    -----END PRIVATE KEY-----
  caCert: |
    -----BEGIN CERTIFICATE-----
    MIIB
    -----END CERTIFICATE-----
"#;

fn with_pems(extra: &str) -> String {
    format!("{PEMS}\n{extra}")
}

fn invalid_key(text: &str) -> (String, String) {
    match from_str(text) {
        Err(ConfigError::Invalid { key, message }) => (key, message),
        Err(other) => panic!("expected an invalid key, got {other}"),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

#[test]
fn defaults_apply_to_a_minimal_config() {
    let loaded = from_str(&with_pems("")).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.server.address, "0.0.0.0");
    assert_eq!(c.server.port, 50051);
    assert!(!c.server.node_id.is_empty());
    assert_eq!(c.jobs.pids_max, 1024);
    assert_eq!(c.jobs.disk_mb, 1);
    assert_eq!(c.jobs.stop_grace, Duration::from_secs(5));
    assert_eq!(c.paths.run_dir, PathBuf::from("/opt/joblet/run"));
    assert_eq!(c.users.api, IdRef::Name("joblet-api".into()));
    assert_eq!(c.users.group, IdRef::Name("joblet".into()));
    assert_eq!(
        c.job_user,
        JobUser {
            uid: 65534,
            gid: 65534
        }
    );
    assert_eq!(c.cgroup.base, "joblet");
    assert_eq!(
        c.cgroup.controllers,
        ["cpu", "memory", "pids", "io", "cpuset"]
    );
    assert_eq!(c.allowed_mounts.len(), DEFAULT_ALLOWED_MOUNTS.len());
    assert!(
        c.allowed_mounts
            .contains(&PathBuf::from("/etc/alternatives"))
    );
    assert_eq!(c.logging.level, "info");
    assert_eq!(c.max_upload_bytes, 128 << 20);
}

#[test]
fn every_key_we_read_is_read() {
    let text = with_pems(
        r#"
version: 3.0
server: {address: "127.0.0.1", port: 6000, nodeId: "node-1", mode: "server"}
joblet:
  defaultCpuLimit: 150
  defaultMemoryLimit: 512
  defaultIoLimit: 10485760
  maxConcurrentJobs: 7
  jobTimeout: "1h30m"
  cleanupTimeout: "3s"
cgroup:
  baseDir: "joblet-1234abcd"
  enableControllers: [memory, cpu, blkio, pids, cpuset, devices]
  cleanupTimeout: "1s"
  defaultPidsLimit: 333
filesystem:
  baseDir: /srv/j/jobs
  tmpDir: /srv/j/tmp
  allowedMounts: [/usr/bin, "/lib//x/./y"]
volumes: {base_path: /srv/j/volumes, default_disk_quota_bytes: 3145729}
runtime: {base_path: /srv/j/runtimes, common_paths: [/usr/local/bin]}
logging: {level: DEBUG, format: JSON, output: stderr}
monitoring: {system_interval: 15s, bind_address: "127.0.0.1:9090"}
grpc: {maxRecvMsgSize: 2097152}
audit: {path: /srv/j/audit/audit.log}
supervisor:
  runDir: /srv/j/run
  stateDir: /srv/j/state
  logsDir: /srv/j/logs
  dataDir: /srv/j/data
  binDir: /srv/j/bin
  users: {api: 64701, persistd: joblet-persistd, stated: "64703", group: 64700}
  jobUser: {uid: 60000, gid: 60001}
  restart: {minBackoff: 200ms, maxBackoff: 5s}
  stopTimeout: 4s
"#,
    );
    let loaded = from_str(&text).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(
        c.server,
        ServerConfig {
            address: "127.0.0.1".into(),
            port: 6000,
            node_id: "node-1".into()
        }
    );
    assert_eq!(
        c.jobs,
        JobDefaults {
            cpu_percent: 150,
            memory_mb: 512,
            io_bps: 10485760,
            pids_max: 333,
            disk_mb: 4,
            max_concurrent_jobs: 7,
            timeout: Duration::from_secs(5400),
            stop_grace: Duration::from_secs(3),
        }
    );
    assert_eq!(c.cgroup.base, "joblet-1234abcd");
    assert_eq!(
        c.cgroup.controllers,
        ["cpu", "memory", "pids", "io", "cpuset"]
    );
    assert_eq!(
        c.allowed_mounts,
        [PathBuf::from("/usr/bin"), PathBuf::from("/lib/x/y")]
    );
    assert_eq!(c.runtime.base_path, PathBuf::from("/srv/j/runtimes"));
    assert_eq!(c.runtime.common_paths, [PathBuf::from("/usr/local/bin")]);
    assert_eq!(
        c.logging,
        LoggingConfig {
            level: "debug".into(),
            format: LogFormat::Json,
            output: LogOutput::Stderr
        }
    );
    assert_eq!(c.max_upload_bytes, 2 << 20);
    assert_eq!(
        c.paths,
        Paths {
            run_dir: "/srv/j/run".into(),
            state_dir: "/srv/j/state".into(),
            logs_dir: "/srv/j/logs".into(),
            data_dir: "/srv/j/data".into(),
            audit_log: "/srv/j/audit/audit.log".into(),
            bin_dir: Some("/srv/j/bin".into()),
        }
    );
    assert_eq!(
        c.users,
        UsersConfig {
            api: IdRef::Id(64701),
            persistd: IdRef::Name("joblet-persistd".into()),
            stated: IdRef::Id(64703),
            group: IdRef::Id(64700),
        }
    );
    assert_eq!(
        c.job_user,
        JobUser {
            uid: 60000,
            gid: 60001
        }
    );
    assert_eq!(
        c.restart,
        RestartPolicy {
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5)
        }
    );
    assert_eq!(c.stop_timeout, Duration::from_secs(4));
}

#[test]
fn a_go_joblet_config_parses_without_unknown_key_warnings() {
    let text = include_str!("testdata/joblet-go-config.yml");
    let loaded = from_str(text).unwrap();
    let unknown: Vec<_> = loaded
        .warnings
        .iter()
        .filter(|w| w.contains("unknown key"))
        .collect();
    assert!(unknown.is_empty(), "{unknown:?}");
    // The one thing worth telling: its cgroup path is reduced to a name.
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("cgroup.baseDir"));
    let c = loaded.config;
    assert_eq!(c.cgroup.base, "joblet.service");
    assert_eq!(c.jobs.stop_grace, Duration::from_millis(100));
    assert_eq!(c.server.node_id, "8f94c5b2-1234-5678-9abc-def012345678");
    assert_eq!(c.allowed_mounts.len(), 14);
}

#[test]
fn unknown_keys_are_warned_with_their_path() {
    let text = with_pems("server:\n  adress: x\nsupervisor:\n  runDirectory: /x\nfoo: 1\n");
    let loaded = from_str(&text).unwrap();
    let w = loaded.warnings.join("\n");
    for key in ["`server.adress`", "`supervisor.runDirectory`", "`foo`"] {
        assert!(w.contains(key), "{key} not in {w}");
    }
    assert_eq!(loaded.warnings.len(), 3);
}

#[test]
fn bad_values_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("server: {port: 70000}", "server.port", ""),
        ("server: {port: abc}", "server.port", ""),
        ("server: {mode: init}", "server.mode", "only"),
        ("joblet: {jobTimeout: 10}", "joblet.jobTimeout", "unit"),
        (
            "joblet: {jobTimeout: 5parsecs}",
            "joblet.jobTimeout",
            "unit",
        ),
        (
            "joblet: {defaultCpuLimit: 99999999}",
            "joblet.defaultCpuLimit",
            "maximum",
        ),
        (
            "joblet: {defaultMemoryLimit: -1}",
            "joblet.defaultMemoryLimit",
            "",
        ),
        (
            "cgroup: {defaultPidsLimit: 0}",
            "cgroup.defaultPidsLimit",
            "between",
        ),
        (
            "cgroup: {baseDir: \"../x\"}",
            "cgroup.baseDir",
            "characters",
        ),
        (
            "cgroup: {enableControllers: [cpu, gpu]}",
            "cgroup.enableControllers",
            "gpu",
        ),
        (
            "filesystem: {allowedMounts: [/bin, usr/lib]}",
            "filesystem.allowedMounts.1",
            "absolute",
        ),
        (
            "filesystem: {allowedMounts: [\"/a/../etc\"]}",
            "filesystem.allowedMounts.0",
            "..",
        ),
        ("logging: {format: xml}", "logging.format", "text or json"),
        ("logging: {level: \"[[[\"}", "logging.level", "filter"),
        (
            "monitoring: {bind_address: nope}",
            "monitoring.bind_address",
            "HOST:PORT",
        ),
        ("supervisor: {runDir: run}", "supervisor.runDir", "absolute"),
        ("supervisor: {runDir: /}", "supervisor.runDir", "`/`"),
        (
            "supervisor: {runDir: /j, dataDir: /j/data}",
            "supervisor.dataDir",
            "overlaps",
        ),
        (
            "supervisor: {users: {api: \"bad name\"}}",
            "supervisor.users.api",
            "neither",
        ),
        (
            "supervisor: {users: {group: 99999999999}}",
            "supervisor.users.group",
            "valid id",
        ),
        (
            "supervisor: {jobUser: {uid: 0}}",
            "supervisor.jobUser.uid",
            "root",
        ),
        (
            "supervisor: {restart: {minBackoff: 1ms}}",
            "supervisor.restart.minBackoff",
            "10ms",
        ),
        (
            "supervisor: {restart: {minBackoff: 5s, maxBackoff: 1s}}",
            "supervisor.restart.maxBackoff",
            "minBackoff",
        ),
        ("grpc: {maxRecvMsgSize: 10}", "grpc.maxRecvMsgSize", "1 MiB"),
    ];
    for (yaml, key, words) in cases {
        let (got_key, message) = invalid_key(&with_pems(yaml));
        assert_eq!(&got_key, key, "for {yaml}: {message}");
        assert!(
            message.contains(words),
            "for {yaml}: {message:?} lacks {words:?}"
        );
    }
}

#[test]
fn tls_material_is_required_and_never_shown() {
    let (key, message) = invalid_key("server: {port: 1}\n");
    assert_eq!(key, "security.serverCert");
    assert!(message.contains("joblet init"), "{message}");
    let text = PEMS
        .replace("BEGIN PRIVATE KEY", "BEGIN NONSENSE")
        .replace("END PRIVATE KEY", "END NONSENSE");
    let (key, _) = invalid_key(&text);
    assert_eq!(key, "security.serverKey");
    let c = from_str(&with_pems("")).unwrap().config;
    assert!(!format!("{c:?}").contains("MIIB"));
}

#[test]
fn the_private_key_never_appears_in_a_syntax_error() {
    let text = format!("{PEMS}\nserver: [unclosed\n").replace("MIIB", "SECRETKEYMATERIAL");
    let err = from_str(&text).unwrap_err().to_string();
    assert!(!err.contains("SECRETKEYMATERIAL"), "{err}");
}

#[test]
fn duplicate_keys_are_refused() {
    let err = from_str(&with_pems("server: {port: 1}\nserver: {port: 2}\n")).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("duplicate"),
        "{err}"
    );
}

#[test]
fn runtime_config_beside_the_main_file_overrides_the_runtime_section() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("joblet-config.yml");
    std::fs::write(&main, with_pems("runtime: {base_path: /a}\n")).unwrap();
    let loaded = load(&main).unwrap();
    assert_eq!(loaded.config.runtime.base_path, PathBuf::from("/a"));
    std::fs::write(
        dir.path().join("runtime-config.yml"),
        "runtime:\n  base_path: /b\n  common_paths: [/usr/local/bin]\n  allowed_mounts: [/bin]\n",
    )
    .unwrap();
    let loaded = load(&main).unwrap();
    assert_eq!(loaded.config.runtime.base_path, PathBuf::from("/b"));
    // tempfile writes 0644: the key's exposure is reported.
    assert!(
        loaded.warnings.iter().any(|w| w.contains("chmod 0600")),
        "{:?}",
        loaded.warnings
    );
    std::fs::write(
        dir.path().join("runtime-config.yml"),
        "runtime: {base_path: rel}\n",
    )
    .unwrap();
    let err = load(&main).unwrap_err().to_string();
    assert!(err.contains("runtime.base_path"), "{err}");
}

#[test]
fn the_packaged_config_is_exactly_the_defaults() {
    let packaged = include_str!("../../../packaging/config/joblet-config.yml");
    // The PEM keys go into the file's own security section.
    assert_eq!(packaged.matches("\nsecurity:\n").count(), 1);
    let loaded = from_str(&packaged.replacen("\nsecurity:\n", PEMS, 1)).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let defaults = from_str(PEMS).unwrap().config;
    assert_eq!(format!("{:?}", loaded.config), format!("{defaults:?}"));
    // Without the security section it is refused, naming what is missing.
    let err = from_str(packaged).unwrap_err().to_string();
    assert!(err.contains("security.serverCert"), "{err}");
}

#[test]
fn only_a_root_owned_unshared_file_is_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("joblet-config.yml");
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    if nix::unistd::geteuid().is_root() {
        check_trusted(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        let err = check_trusted(&path).unwrap_err().to_string();
        assert!(err.contains("writable by others"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
    }
    let err = check_trusted(&path).unwrap_err().to_string();
    assert!(err.contains("owned by uid"), "{err}");
}
