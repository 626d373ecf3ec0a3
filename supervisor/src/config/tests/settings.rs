//! The keys behind the helpers' protocol-2 settings: `security.userNamespace`,
//! `security.landlock` and `monitoring.*`.

use std::time::Duration;

use joblet_ipc_proto::settings::{Enforcement, UserNamespaces};

use super::{PEMS, invalid_key};
use crate::config::{ListenAddress, from_str};

/// A config whose security section (the PEMs') continues with `security` (indented lines),
/// followed by `extra`.
fn config(security: &str, extra: &str) -> String {
    format!("{PEMS}{security}\n{extra}")
}

const DEFAULT_USERNS: UserNamespaces = UserNamespaces {
    enabled: true,
    host_base: 1_879_048_192,
    range: 65536,
    slots: 1024,
};

#[test]
fn defaults_confine_jobs_and_serve_no_metrics() {
    let loaded = from_str(&config("", "")).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.security.userns, DEFAULT_USERNS);
    assert_eq!(c.security.landlock, Enforcement::BestEffort);
    assert_eq!(c.monitoring.system_interval, Duration::from_secs(10));
    assert_eq!(c.monitoring.job_metrics_interval, Duration::from_secs(5));
    assert_eq!(c.monitoring.metrics_address, None);
}

#[test]
fn every_new_key_is_read() {
    let text = config(
        "  userNamespace: {enabled: true, hostBase: 2000000000, range: 100000, slots: 16}\n  \
         landlock: required\n",
        "monitoring: {system_interval: 2s, job_metrics_interval: 100ms, \
         bind_address: \"[::1]:9100\"}\njoblet: {maxConcurrentJobs: 16}\n\
         supervisor: {jobUser: {uid: 99999, gid: 65534}}\n",
    );
    let loaded = from_str(&text).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(
        c.security.userns,
        UserNamespaces {
            enabled: true,
            host_base: 2_000_000_000,
            range: 100_000,
            slots: 16
        }
    );
    assert_eq!(c.security.landlock, Enforcement::Required);
    assert_eq!(c.monitoring.system_interval, Duration::from_secs(2));
    assert_eq!(
        c.monitoring.job_metrics_interval,
        Duration::from_millis(100)
    );
    assert_eq!(
        c.monitoring.metrics_address,
        Some(ListenAddress {
            host: "::1".into(),
            port: 9100
        })
    );
}

#[test]
fn slots_default_to_at_least_max_concurrent_jobs() {
    let c = from_str(&config("", "joblet: {maxConcurrentJobs: 2000}\n"))
        .unwrap()
        .config;
    assert_eq!(c.security.userns.slots, 2000);
    let c = from_str(&config("", "joblet: {maxConcurrentJobs: 10}\n"))
        .unwrap()
        .config;
    assert_eq!(c.security.userns.slots, 1024);
}

#[test]
fn landlock_levels_in_their_spellings() {
    for (value, expected) in [
        ("required", Enforcement::Required),
        ("REQUIRED", Enforcement::Required),
        ("best-effort", Enforcement::BestEffort),
        ("\"best_effort\"", Enforcement::BestEffort),
        ("off", Enforcement::Off),
        ("\"off\"", Enforcement::Off),
        ("false", Enforcement::Off),
    ] {
        let loaded = from_str(&config(&format!("  landlock: {value}\n"), "")).unwrap();
        assert_eq!(loaded.config.security.landlock, expected, "{value}");
        let warned = loaded
            .warnings
            .iter()
            .any(|w| w.contains("landlock is off"));
        assert_eq!(warned, expected == Enforcement::Off, "{value}");
    }
}

#[test]
fn switching_user_namespaces_off_is_warned_and_still_checked() {
    let loaded = from_str(&config("  userNamespace: {enabled: false}\n", "")).unwrap();
    assert_eq!(
        loaded.config.security.userns,
        UserNamespaces {
            enabled: false,
            ..DEFAULT_USERNS
        }
    );
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("same host uid 65534"));
    // Numbers that could never be switched on are refused even while off.
    let (key, _) = invalid_key(&config(
        "  userNamespace: {enabled: false, hostBase: 10}\n",
        "",
    ));
    assert_eq!(key, "security.userNamespace.hostBase");
}

#[test]
fn a_span_past_two_to_the_31_is_warned_about() {
    let loaded = from_str(&config("  userNamespace: {hostBase: 2147483648}\n", "")).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("signed 32-bit"));
    // The last valid id, 4294967294, may be the span's last.
    let exact = 4_294_967_295u64 - 65536;
    let loaded = from_str(&config(
        &format!("  userNamespace: {{hostBase: {exact}, slots: 1}}\n"),
        "",
    ))
    .unwrap();
    assert_eq!(loaded.config.security.userns.host_base as u64, exact);
}

#[test]
fn metrics_addresses_empty_public_and_any_port() {
    let c = from_str(&config("", "monitoring: {bind_address: \"\"}\n"))
        .unwrap()
        .config;
    assert_eq!(c.monitoring.metrics_address, None, "empty is Joblet's off");
    let loaded = from_str(&config(
        "",
        "monitoring: {bind_address: \"0.0.0.0:9090\"}\n",
    ))
    .unwrap();
    assert!(
        loaded.warnings[0].contains("without authentication"),
        "{:?}",
        loaded.warnings
    );
    let c = from_str(&config("", "monitoring: {bind_address: \"127.0.0.1:0\"}\n"))
        .unwrap()
        .config;
    assert_eq!(
        c.monitoring.metrics_address.unwrap().to_string(),
        "127.0.0.1:0"
    );
}

#[test]
fn bad_new_values_name_their_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "  userNamespace: {range: 65535}\n",
            "",
            "security.userNamespace.range",
            "below 65536",
        ),
        (
            "",
            "supervisor: {jobUser: {uid: 70000, gid: 1000}}\n",
            "security.userNamespace.range",
            "at least 70001",
        ),
        (
            "  userNamespace: {range: 70000}\n",
            "supervisor: {jobUser: {uid: 100, gid: 70000}}\n",
            "security.userNamespace.range",
            "supervisor.jobUser",
        ),
        (
            "  userNamespace: {slots: 0}\n",
            "",
            "security.userNamespace.slots",
            "at least 1",
        ),
        (
            "  userNamespace: {slots: 4}\n",
            "joblet: {maxConcurrentJobs: 5}\n",
            "security.userNamespace.slots",
            "joblet.maxConcurrentJobs (5)",
        ),
        (
            "  userNamespace: {hostBase: 65535}\n",
            "",
            "security.userNamespace.hostBase",
            "0-65535",
        ),
        (
            "  userNamespace: {hostBase: 0}\n",
            "",
            "security.userNamespace.hostBase",
            "host's own ids",
        ),
        (
            "  userNamespace: {hostBase: 4250000000}\n",
            "",
            "security.userNamespace",
            "4294967294",
        ),
        (
            "  userNamespace: {hostBase: 4294901760, range: 65536, slots: 1}\n",
            "",
            "security.userNamespace",
            "last valid id",
        ),
        (
            "  userNamespace: {hostBase: -1}\n",
            "",
            "security.userNamespace.hostBase",
            "",
        ),
        (
            "  userNamespace: {range: 99999999999}\n",
            "",
            "security.userNamespace.range",
            "",
        ),
        (
            "  userNamespace: {enabled: maybe}\n",
            "",
            "security.userNamespace.enabled",
            "",
        ),
        (
            "  landlock: sometimes\n",
            "",
            "security.landlock",
            "required, best-effort or off",
        ),
        (
            "  landlock: true\n",
            "",
            "security.landlock",
            "required, best-effort or off",
        ),
        (
            "",
            "monitoring: {job_metrics_interval: 50ms}\n",
            "monitoring.job_metrics_interval",
            "between 100ms and 1h",
        ),
        (
            "",
            "monitoring: {job_metrics_interval: 2h}\n",
            "monitoring.job_metrics_interval",
            "between",
        ),
        (
            "",
            "monitoring: {job_metrics_interval: 5}\n",
            "monitoring.job_metrics_interval",
            "unit",
        ),
        (
            "",
            "monitoring: {system_interval: 500ms}\n",
            "monitoring.system_interval",
            "between 1s and 1h",
        ),
        (
            "",
            "monitoring: {bind_address: \"::1:9090\"}\n",
            "monitoring.bind_address",
            "[::1]:9090",
        ),
        (
            "",
            "monitoring: {bind_address: \"localhost:http\"}\n",
            "monitoring.bind_address",
            "HOST:PORT",
        ),
    ];
    for (security, extra, key, words) in cases {
        let (got_key, message) = invalid_key(&config(security, extra));
        assert_eq!(&got_key, key, "for {security}{extra}: {message}");
        assert!(
            message.contains(words),
            "for {security}{extra}: {message:?} lacks {words:?}"
        );
    }
}
