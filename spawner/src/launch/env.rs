//! The job's environment and command lookup: pure functions, decided before any fork.

use joblet_ipc_proto::job::{EnvVar, JobId, JobSpec};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub const DEFAULT_HOME: &str = "/work";
pub const WORK_DIR: &str = "/work";

/// The job's hostname: `job-` and the first 8 hex digits of its id.
pub fn hostname(job: &JobId) -> String {
    format!("job-{}", job.short())
}

/// Exactly the job's environment, as `KEY=VALUE` strings: defaults for PATH, HOME and HOSTNAME
/// unless the request sets them, JOB_ID (reserved: validation refuses it in requests), then the
/// request's variables and secrets. Nothing comes from the spawner's own environment.
pub fn build(job: &JobId, spec: &JobSpec, secrets: &[EnvVar]) -> Vec<String> {
    let given = |k: &str| spec.env.iter().chain(secrets).any(|v| v.key == k);
    let mut env = Vec::with_capacity(4 + spec.env.len() + secrets.len());
    if !given("PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !given("HOME") {
        env.push(format!("HOME={DEFAULT_HOME}"));
    }
    if !given("HOSTNAME") {
        env.push(format!("HOSTNAME={}", hostname(job)));
    }
    env.push(format!("JOB_ID={job}"));
    let given = spec.env.iter().chain(secrets);
    env.extend(given.map(|v| format!("{}={}", v.key, v.value)));
    env
}

/// The PATH the command is looked up in: the one in the job's environment.
pub fn search_path(env: &[String]) -> &str {
    let path = env.iter().find_map(|kv| kv.strip_prefix("PATH="));
    path.unwrap_or(DEFAULT_PATH)
}

/// Where to look for `command`, in order, as execvp does: a name with a `/` is used as given;
/// a bare name is tried in each PATH entry (an empty entry means the current directory).
pub fn candidates(command: &str, path: &str) -> Vec<String> {
    if command.contains('/') {
        return vec![command.to_string()];
    }
    path.split(':')
        .map(|dir| {
            let dir = match dir {
                "" => ".",
                dir => dir.trim_end_matches('/'),
            };
            format!("{dir}/{command}")
        })
        .collect()
}

/// The working directory inside the job.
pub fn work_dir(spec: &JobSpec) -> &str {
    match spec.work_dir.as_str() {
        "" => WORK_DIR,
        dir => dir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> JobId {
        JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap()
    }

    #[test]
    fn defaults_then_request_then_secrets() {
        let spec = JobSpec {
            command: "x".into(),
            env: vec![EnvVar::new("A", "1")],
            ..Default::default()
        };
        let env = build(&id(), &spec, &[EnvVar::new("TOKEN", "s")]);
        assert_eq!(
            env,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOME=/work".to_string(),
                "HOSTNAME=job-0b7c1a2e".to_string(),
                "JOB_ID=0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c".to_string(),
                "A=1".to_string(),
                "TOKEN=s".to_string(),
            ]
        );
    }

    #[test]
    fn request_overrides_defaults_without_duplicates() {
        let spec = JobSpec {
            command: "x".into(),
            env: vec![
                EnvVar::new("PATH", "/opt/bin"),
                EnvVar::new("HOSTNAME", "h"),
            ],
            ..Default::default()
        };
        let env = build(&id(), &spec, &[EnvVar::new("HOME", "/tmp")]);
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert_eq!(env.iter().filter(|e| e.starts_with("HOME=")).count(), 1);
        assert_eq!(env.iter().filter(|e| e.starts_with("HOSTNAME=")).count(), 1);
        assert_eq!(search_path(&env), "/opt/bin");
    }

    #[test]
    fn nothing_leaks_from_our_environment() {
        let env = build(&id(), &JobSpec::default(), &[]);
        assert_eq!(env.len(), 4);
    }

    #[test]
    fn command_candidates() {
        assert_eq!(candidates("/bin/sh", DEFAULT_PATH), vec!["/bin/sh"]);
        assert_eq!(candidates("./run.sh", DEFAULT_PATH), vec!["./run.sh"]);
        assert_eq!(
            candidates("sh", "/usr/bin:/bin/"),
            vec!["/usr/bin/sh", "/bin/sh"]
        );
        assert_eq!(candidates("sh", ":/bin"), vec!["./sh", "/bin/sh"]);
    }

    #[test]
    fn work_dir_defaults() {
        let mut spec = JobSpec::default();
        assert_eq!(work_dir(&spec), "/work");
        spec.work_dir = "/work/sub".into();
        assert_eq!(work_dir(&spec), "/work/sub");
    }
}
