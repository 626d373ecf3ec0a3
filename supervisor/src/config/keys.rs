//! Keys we do not read: silent when Joblet documents them (an existing Joblet config must keep
//! working), a warning otherwise (most likely a typo that would silently change nothing).

/// Keys from Joblet's config template and configuration guide that joblet-rs accepts but does
/// not use. An entry covers everything below it (`persist` covers `persist.storage.type`).
const DOCUMENTED_UNUSED: &[&str] = &[
    // Whole sections: our helpers take their own settings from the supervisor instead.
    "buffers",
    "gpu",
    "grpc",
    "ipc",
    "job_metrics",
    "network",
    "persist",
    "process",
    "state",
    "telemetry",
    "volume",
    // Keys of sections we otherwise read.
    "server.timeout",
    "server.minTlsVersion",
    "server.tls",
    "server.max_message_size",
    "server.keepalive",
    "security.require_client_cert",
    "security.verify_client_cert",
    "security.enable_rbac",
    "security.default_role",
    "security.audit",
    "joblet.validateCommands",
    "joblet.allowedCommands",
    "joblet.isolation",
    "joblet.preserveFailedJobs",
    "cgroup.namespaceMount",
    "cgroup.version",
    "cgroup.accounting",
    "filesystem.workspaceDir",
    "filesystem.blockDevices",
    "filesystem.workspace",
    "filesystem.enable_chroot",
    "filesystem.readonly_rootfs",
    "logging.outputs",
    "logging.components",
    "monitoring.enabled",
    "monitoring.process_interval",
    "monitoring.cloud_detection",
    "monitoring.collection",
    "monitoring.metrics",
    "runtime.allowed_mounts",
];

/// True when `key` (dotted path) is, or lies below, a documented Joblet key.
pub fn is_documented(key: &str) -> bool {
    DOCUMENTED_UNUSED.iter().any(|d| {
        key == *d
            || key
                .strip_prefix(d)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The dotted key of a path reported by `serde_ignored` (`server.timeout`, `persist`).
pub fn dotted(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    let mut parts = Vec::new();
    let mut at = path;
    loop {
        match at {
            Path::Root => break,
            Path::Map { parent, key } => {
                parts.push(key.clone());
                at = parent;
            }
            Path::Seq { parent, index } => {
                parts.push(index.to_string());
                at = parent;
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => at = parent,
        }
    }
    parts.reverse();
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_covers_subkeys_only_on_boundaries() {
        assert!(is_documented("persist"));
        assert!(is_documented("persist.storage.cloudwatch.region"));
        assert!(is_documented("server.tls.min_version"));
        assert!(!is_documented("persistence"));
        assert!(!is_documented("server.adress"));
        assert!(!is_documented("supervisor.runDirectory"));
    }
}
