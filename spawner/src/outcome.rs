//! How a job's end, as the shim recorded it, becomes the outcome clients see.

use joblet_ipc_proto::job::{EndReason, JobOutcome};

use crate::record::{ExitFile, StopCause};

/// Exit code of a job stopped by its timeout, as `timeout(1)` reports it.
pub const TIMEOUT_EXIT_CODE: i32 = 124;

/// Builds the outcome from the shim's exit record, why we stopped it (if we did), and how many
/// OOM kills its cgroup saw. Returns the outcome and the end time.
pub fn from_exit(exit: &ExitFile, stop: Option<StopCause>, oom_kills: u64) -> (JobOutcome, u64) {
    match exit {
        ExitFile::LaunchFailed {
            exit_code,
            message,
            ended_ns,
        } => {
            let mut o = JobOutcome::launch_failed(message.clone());
            o.exit_code = *exit_code;
            (o, *ended_ns)
        }
        ExitFile::Exited {
            wait_status,
            ended_ns,
        } => (from_status(*wait_status, stop, oom_kills), *ended_ns),
    }
}

fn from_status(status: i32, stop: Option<StopCause>, oom_kills: u64) -> JobOutcome {
    let (mut exit_code, signal) = if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (128 + sig, Some(sig))
    } else {
        (libc::WEXITSTATUS(status), None)
    };
    let oom_killed = oom_kills > 0 || stop == Some(StopCause::OutOfMemory);
    let (reason, message) = match (stop, oom_killed, signal) {
        (Some(StopCause::OutOfMemory), _, _) => (
            EndReason::OomKilled,
            "the job reached its memory limit and was killed whole".to_string(),
        ),
        (Some(StopCause::Timeout), _, _) => {
            exit_code = TIMEOUT_EXIT_CODE;
            (EndReason::Timeout, "stopped at its timeout".to_string())
        }
        (Some(StopCause::Stopped), _, _) => (EndReason::Stopped, "stopped on request".into()),
        (None, true, _) => (
            EndReason::OomKilled,
            format!("the job reached its memory limit ({oom_kills} OOM kill(s))"),
        ),
        (None, false, Some(sig)) => (EndReason::Signaled, format!("killed by signal {sig}")),
        (None, false, None) => (EndReason::Exited, format!("exited with code {exit_code}")),
    };
    JobOutcome {
        exit_code,
        signal,
        oom_killed,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joblet_ipc_proto::job::JobState;

    fn exited(code: i32) -> ExitFile {
        ExitFile::Exited {
            wait_status: (code & 0xff) << 8,
            ended_ns: 5,
        }
    }
    fn killed(sig: i32) -> ExitFile {
        ExitFile::Exited {
            wait_status: sig,
            ended_ns: 5,
        }
    }

    #[test]
    fn plain_exit_codes() {
        let (o, end) = from_exit(&exited(0), None, 0);
        assert_eq!((o.exit_code, o.reason, end), (0, EndReason::Exited, 5));
        assert_eq!(o.final_state(), JobState::Completed);
        let (o, _) = from_exit(&exited(3), None, 0);
        assert_eq!((o.exit_code, o.signal), (3, None));
        assert_eq!(o.final_state(), JobState::Failed);
    }

    #[test]
    fn signals_are_128_plus() {
        let (o, _) = from_exit(&killed(libc::SIGSEGV), None, 0);
        assert_eq!(o.exit_code, 128 + libc::SIGSEGV);
        assert_eq!(o.signal, Some(libc::SIGSEGV));
        assert_eq!(o.reason, EndReason::Signaled);
    }

    #[test]
    fn stop_timeout_and_oom() {
        let (o, _) = from_exit(&killed(libc::SIGKILL), Some(StopCause::Stopped), 0);
        assert_eq!((o.reason, o.exit_code), (EndReason::Stopped, 137));
        assert_eq!(o.final_state(), JobState::Stopped);
        let (o, _) = from_exit(&killed(libc::SIGTERM), Some(StopCause::Timeout), 0);
        assert_eq!(
            (o.reason, o.exit_code),
            (EndReason::Timeout, TIMEOUT_EXIT_CODE)
        );
        assert_eq!(o.final_state(), JobState::Timeout);
        let (o, _) = from_exit(&killed(libc::SIGKILL), None, 1);
        assert_eq!(o.reason, EndReason::OomKilled);
        assert!(o.oom_killed);
        // A job that survived an OOM kill of one child still counts as OOM killed.
        let (o, _) = from_exit(&exited(0), None, 2);
        assert!(o.oom_killed);
        assert_eq!(o.final_state(), JobState::Failed);
        // A stop wins over OOM for the reason, but the flag stays.
        let (o, _) = from_exit(&killed(libc::SIGKILL), Some(StopCause::Stopped), 1);
        assert_eq!(o.reason, EndReason::Stopped);
        assert!(o.oom_killed);
        // v1: the spawner's own whole-job kill, with no kernel OOM kill counted.
        let (o, _) = from_exit(&killed(libc::SIGKILL), Some(StopCause::OutOfMemory), 0);
        assert_eq!((o.reason, o.exit_code), (EndReason::OomKilled, 137));
        assert!(o.oom_killed);
        assert_eq!(o.final_state(), JobState::Failed);
    }

    #[test]
    fn launch_failures_keep_their_code() {
        let f = ExitFile::LaunchFailed {
            exit_code: 127,
            message: "command not found: nope".into(),
            ended_ns: 9,
        };
        let (o, end) = from_exit(&f, None, 0);
        assert_eq!(
            (o.exit_code, o.reason, end),
            (127, EndReason::LaunchFailed, 9)
        );
        assert!(o.message.contains("nope"));
    }
}
