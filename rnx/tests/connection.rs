//! The real `rnx` binary and everything around the calls: flag and config errors, node
//! selection, unreachable nodes and each TLS failure, with their exit codes.

mod support;

use support::pki::Ca;
use support::server::{SERVER_VERSION, TestServer};
use support::{NodeEntry, Setup, rnx, write_config};

#[test]
fn bad_flags_fail_before_any_connection() {
    // No server at all: the flag errors must come first.
    let dir = tempfile::tempdir().unwrap();
    let run = rnx(dir.path(), &["job", "run", "--max-memory=lots", "x"]);
    assert_eq!(run.code, 7, "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        "Error: --max-memory: 'lots' is not a whole number"
    );
    let run = rnx(dir.path(), &["job", "run", "--bogus", "x"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("unknown flag: --bogus"), "{run:?}");
    let run = rnx(dir.path(), &["job", "status"]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn missing_config_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let run = rnx(dir.path(), &["job", "list"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("config: rnx-config.yml not found; looked in"),
        "{run:?}"
    );
    assert!(run.stderr.contains(".rnx/rnx-config.yml"), "{run:?}");
    let run = rnx(
        dir.path(),
        &["--config", "/nonexistent/x.yml", "job", "list"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("/nonexistent/x.yml not found (given by --config)"),
        "{run:?}"
    );
}

#[test]
fn config_is_found_in_home_and_unknown_node_exits_3() {
    let s = Setup::new();
    let rnx_dir = s.dir.path().join(".rnx");
    std::fs::create_dir(&rnx_dir).unwrap();
    std::fs::copy(&s.config, rnx_dir.join("rnx-config.yml")).unwrap();
    std::fs::remove_file(&s.config).unwrap();
    let list = rnx(s.dir.path(), &["job", "list"]);
    assert_eq!(list.code, 0, "{list:?}");
    let bad = rnx(s.dir.path(), &["--node", "prod", "job", "list"]);
    assert_eq!(bad.code, 3, "{bad:?}");
    assert!(
        bad.stderr
            .contains("node 'prod' not found; configured nodes: default, viewer"),
        "{bad:?}"
    );
}

#[test]
fn unreachable_node_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let admin = ca.client("admin");
    // A port nobody listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let config = write_config(
        dir.path(),
        "c.yml",
        &[NodeEntry {
            name: "default",
            address: address.clone(),
            client: &admin,
            ca_pem: &ca.pem,
            is_default: true,
        }],
    );
    let run = rnx(
        dir.path(),
        &["--config", config.to_str().unwrap(), "job", "list"],
    );
    assert_eq!(run.code, 5, "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        format!("Error: cannot reach node default at {address}: connection refused")
    );
}

#[test]
fn wrong_ca_exits_6() {
    let s = Setup::new();
    let other = Ca::new("some other CA");
    let config = write_config(
        s.dir.path(),
        "wrong-ca.yml",
        &[NodeEntry {
            name: "default",
            address: s.server.addr.to_string(),
            client: &s.admin,
            ca_pem: &other.pem,
            is_default: true,
        }],
    );
    let run = rnx(
        s.dir.path(),
        &["--config", config.to_str().unwrap(), "job", "list"],
    );
    assert_eq!(run.code, 6, "{run:?}");
    assert!(
        run.stderr.contains("TLS handshake with node default at"),
        "{run:?}"
    );
    assert!(run.stderr.contains("is the CA right"), "{run:?}");
}

#[test]
fn server_certificate_must_name_joblet() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("ca");
    let admin = ca.client("admin");
    let viewer = ca.client("viewer");
    // Valid for the address we dial, but not for "joblet": refused, as Joblet's rnx does.
    let server = TestServer::start(&ca.server(&["localhost", "127.0.0.1"]), &ca.pem, &viewer);
    let config = write_config(
        dir.path(),
        "c.yml",
        &[NodeEntry {
            name: "default",
            address: server.addr.to_string(),
            client: &admin,
            ca_pem: &ca.pem,
            is_default: true,
        }],
    );
    let run = rnx(
        dir.path(),
        &["--config", config.to_str().unwrap(), "job", "list"],
    );
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("TLS handshake"), "{run:?}");
    assert!(run.stderr.contains("'joblet'"), "{run:?}");
}

#[test]
fn client_certificate_from_another_ca_exits_6() {
    let s = Setup::new();
    let stranger = Ca::new("stranger CA").client("admin");
    let config = write_config(
        s.dir.path(),
        "stranger.yml",
        &[NodeEntry {
            name: "default",
            address: s.server.addr.to_string(),
            client: &stranger,
            ca_pem: &s.ca.pem,
            is_default: true,
        }],
    );
    let run = rnx(
        s.dir.path(),
        &["--config", config.to_str().unwrap(), "job", "list"],
    );
    assert_eq!(run.code, 6, "{run:?}");
    assert!(run.stderr.contains("client certificate"), "{run:?}");
}

#[test]
fn version_reports_both_sides() {
    let s = Setup::new();
    let run = s.rnx(&["-v"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .starts_with(&format!("rnx {}", env!("CARGO_PKG_VERSION"))),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!("joblet {SERVER_VERSION}")),
        "{run:?}"
    );
    let json = s.rnx(&["--version", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["joblet"]["version"], SERVER_VERSION);
    // Without a config it still answers, with the reason.
    let dir = tempfile::tempdir().unwrap();
    let run = rnx(dir.path(), &["-v"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("joblet: unknown (config:"), "{run:?}");
}

#[test]
fn nodes_lists_the_config_without_secrets() {
    let s = Setup::new();
    let run = s.rnx(&["nodes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.lines().any(|l| l.starts_with("*  default")),
        "{run:?}"
    );
    assert!(!run.stdout.contains("PRIVATE KEY"), "{run:?}");
    let json = s.rnx(&["nodes", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[0]["name"], "default");
    assert_eq!(v[0]["default"], true);
    assert_eq!(v[1]["status"], "active");
}

#[cfg(unix)]
#[test]
fn readable_config_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    std::fs::set_permissions(&s.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = s.rnx(&["nodes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("holds a private key"), "{run:?}");
    assert!(run.stderr.contains("chmod 600"), "{run:?}");
    std::fs::set_permissions(&s.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(s.rnx(&["nodes"]).stderr, "");
}

#[test]
fn config_help_needs_no_config() {
    let dir = tempfile::tempdir().unwrap();
    let run = rnx(dir.path(), &["config-help"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("isDefault: true"), "{run:?}");
    assert!(run.stdout.contains("$RNX_CONFIG"), "{run:?}");
}
