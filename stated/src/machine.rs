//! The job state machine applied to a stored record.
//!
//! Which moves are legal is [`JobState::can_move_to`] (shared with every process); this module
//! adds what a move does to the record: the start time on RUNNING, the end time and outcome on
//! a terminal state, and dropping the sealed secrets once a job is no longer SCHEDULED. It is
//! pure, so every pair of states is unit-tested here.

use joblet_ipc_proto::job::{JobId, JobOutcome, JobRecord, JobState};
use joblet_ipc_proto::validate::{self, ValidationError};

/// What a transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The record moved and must be written.
    Moved,
    /// The job already was in the requested state: nothing changed, nothing to write.
    AlreadyThere,
}

/// A refused transition or new record; the request was wrong, the record is untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MachineError {
    #[error("job {job} cannot move from {from} to {to}")]
    Illegal {
        job: JobId,
        from: JobState,
        to: JobState,
    },
    #[error("a move to {to} must carry the job's outcome")]
    OutcomeMissing { to: JobState },
    #[error("an outcome is recorded only when a job ends, not on a move to {to}")]
    OutcomeUnexpected { to: JobState },
    #[error("a move to {to} must carry the time it happened (at_ns > 0)")]
    TimeMissing { to: JobState },
    #[error("a new job must start in INITIALIZING or SCHEDULED, not {0}")]
    InitialState(JobState),
    #[error("a new job cannot already have {0}")]
    NotFresh(&'static str),
    #[error("sealed secrets are kept only for SCHEDULED jobs, not for a job created {0}")]
    SecretsNotScheduled(JobState),
    #[error("job {job}: {source}")]
    Spec { job: JobId, source: ValidationError },
}

/// Checks a record the frontend wants to create: a fresh job with a valid spec.
pub fn check_new(record: &JobRecord) -> Result<(), MachineError> {
    if !matches!(record.state, JobState::Initializing | JobState::Scheduled) {
        return Err(MachineError::InitialState(record.state));
    }
    if record.started_ns != 0 {
        return Err(MachineError::NotFresh("a start time"));
    }
    if record.ended_ns != 0 {
        return Err(MachineError::NotFresh("an end time"));
    }
    if record.outcome.is_some() {
        return Err(MachineError::NotFresh("an outcome"));
    }
    if !record.sealed_secrets.is_empty() && record.state != JobState::Scheduled {
        return Err(MachineError::SecretsNotScheduled(record.state));
    }
    validate::spec(&record.spec).map_err(|source| MachineError::Spec {
        job: record.id.clone(),
        source,
    })
}

/// Moves `record` to `to` at `at_ns`, or explains why it cannot. A move to the state the job
/// is already in changes nothing and succeeds, so a repeated report is harmless.
pub fn transition(
    record: &mut JobRecord,
    to: JobState,
    at_ns: u64,
    outcome: Option<JobOutcome>,
) -> Result<Change, MachineError> {
    if record.state == to {
        return Ok(Change::AlreadyThere);
    }
    if !record.state.can_move_to(to) {
        return Err(MachineError::Illegal {
            job: record.id.clone(),
            from: record.state,
            to,
        });
    }
    match (to.is_terminal(), outcome.is_some()) {
        (true, false) => return Err(MachineError::OutcomeMissing { to }),
        (false, true) => return Err(MachineError::OutcomeUnexpected { to }),
        _ => {}
    }
    if records_time(to) && at_ns == 0 {
        return Err(MachineError::TimeMissing { to });
    }
    if to == JobState::Running {
        record.started_ns = at_ns;
    }
    if to.is_terminal() {
        record.ended_ns = at_ns;
        record.outcome = outcome;
    }
    // Every legal move leaves SCHEDULED behind for good; the secrets were only kept so the
    // frontend could start the job later.
    record.sealed_secrets = Vec::new();
    record.state = to;
    Ok(Change::Moved)
}

/// Whether entering `to` stamps a time on the record.
fn records_time(to: JobState) -> bool {
    to == JobState::Running || to.is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;
    use joblet_ipc_proto::job::{EndReason, JobSpec};

    fn record(state: JobState) -> JobRecord {
        JobRecord {
            id: JobId::parse("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap(),
            spec: JobSpec {
                command: "/bin/true".into(),
                ..JobSpec::default()
            },
            state,
            node_id: "node".into(),
            created_ns: 1,
            started_ns: 0,
            ended_ns: 0,
            outcome: None,
            sealed_secrets: if state == Scheduled {
                vec![1, 2, 3]
            } else {
                Vec::new()
            },
        }
    }

    fn outcome() -> JobOutcome {
        JobOutcome {
            exit_code: 0,
            signal: None,
            oom_killed: false,
            reason: EndReason::Exited,
            message: String::new(),
        }
    }

    fn outcome_for(to: JobState) -> Option<JobOutcome> {
        to.is_terminal().then(outcome)
    }

    const LEGAL: &[(JobState, JobState)] = &[
        (Scheduled, Initializing),
        (Scheduled, Canceled),
        (Scheduled, Failed),
        (Initializing, Running),
        (Initializing, Failed),
        (Initializing, Stopped),
        (Running, Completed),
        (Running, Failed),
        (Running, Stopped),
        (Running, Timeout),
    ];

    #[test]
    fn every_pair_follows_the_table() {
        for from in JobState::ALL {
            for to in JobState::ALL {
                let mut r = record(from);
                let before = r.clone();
                let got = transition(&mut r, to, 42, outcome_for(to));
                if from == to {
                    assert_eq!(got, Ok(Change::AlreadyThere), "{from} -> {to}");
                    assert_eq!(r, before, "{from} -> {to} changed the record");
                } else if LEGAL.contains(&(from, to)) {
                    assert_eq!(got, Ok(Change::Moved), "{from} -> {to}");
                    assert_eq!(r.state, to);
                } else {
                    let err = got.unwrap_err();
                    assert_eq!(
                        err,
                        MachineError::Illegal {
                            job: r.id.clone(),
                            from,
                            to
                        }
                    );
                    let msg = err.to_string();
                    assert!(
                        msg.contains(from.as_str()) && msg.contains(to.as_str()),
                        "{msg}"
                    );
                    assert_eq!(r, before, "refused {from} -> {to} changed the record");
                }
            }
        }
    }

    #[test]
    fn repeating_a_move_is_harmless() {
        let mut r = record(Running);
        transition(&mut r, Completed, 100, Some(outcome())).unwrap();
        let done = r.clone();
        // A second exit report, even with another time and outcome, changes nothing.
        let mut other = outcome();
        other.exit_code = 9;
        assert_eq!(
            transition(&mut r, Completed, 200, Some(other)),
            Ok(Change::AlreadyThere)
        );
        assert_eq!(r, done);
        // And without an outcome too.
        assert_eq!(
            transition(&mut r, Completed, 0, None),
            Ok(Change::AlreadyThere)
        );
        assert_eq!(r, done);
    }

    #[test]
    fn times_and_outcome_are_set() {
        let mut r = record(Initializing);
        transition(&mut r, Running, 1_000, None).unwrap();
        assert_eq!((r.started_ns, r.ended_ns), (1_000, 0));
        assert_eq!(r.outcome, None);
        let mut o = outcome();
        o.exit_code = 3;
        transition(&mut r, Failed, 5_000, Some(o.clone())).unwrap();
        assert_eq!((r.started_ns, r.ended_ns), (1_000, 5_000));
        assert_eq!(r.outcome, Some(o));
    }

    #[test]
    fn a_job_failing_before_it_runs_has_no_start_time() {
        let mut r = record(Initializing);
        let o = JobOutcome::launch_failed("exec failed");
        transition(&mut r, Failed, 7, Some(o.clone())).unwrap();
        assert_eq!((r.started_ns, r.ended_ns), (0, 7));
        assert_eq!(r.outcome, Some(o));
    }

    #[test]
    fn secrets_are_dropped_when_leaving_scheduled() {
        for to in [Initializing, Canceled, Failed] {
            let mut r = record(Scheduled);
            assert!(!r.sealed_secrets.is_empty());
            transition(&mut r, to, 9, outcome_for(to)).unwrap();
            assert!(r.sealed_secrets.is_empty(), "{to} kept the secrets");
        }
    }

    #[test]
    fn terminal_moves_need_an_outcome_and_others_refuse_one() {
        let mut r = record(Running);
        assert_eq!(
            transition(&mut r, Completed, 1, None),
            Err(MachineError::OutcomeMissing { to: Completed })
        );
        let mut r = record(Initializing);
        assert_eq!(
            transition(&mut r, Running, 1, Some(outcome())),
            Err(MachineError::OutcomeUnexpected { to: Running })
        );
        assert_eq!(r, record(Initializing));
    }

    #[test]
    fn timed_moves_need_a_time() {
        let mut r = record(Initializing);
        assert_eq!(
            transition(&mut r, Running, 0, None),
            Err(MachineError::TimeMissing { to: Running })
        );
        let mut r = record(Running);
        assert_eq!(
            transition(&mut r, Stopped, 0, Some(outcome())),
            Err(MachineError::TimeMissing { to: Stopped })
        );
        // SCHEDULED -> INITIALIZING stamps nothing, so no time is needed.
        let mut r = record(Scheduled);
        assert_eq!(transition(&mut r, Initializing, 0, None), Ok(Change::Moved));
    }

    #[test]
    fn new_records_must_be_fresh() {
        assert_eq!(check_new(&record(Initializing)), Ok(()));
        assert_eq!(check_new(&record(Scheduled)), Ok(()));
        for state in [Running, Completed, Failed, Stopped, Canceled, Timeout] {
            assert_eq!(
                check_new(&record(state)),
                Err(MachineError::InitialState(state))
            );
        }
        let mut r = record(Initializing);
        r.started_ns = 5;
        assert!(matches!(check_new(&r), Err(MachineError::NotFresh(_))));
        let mut r = record(Initializing);
        r.ended_ns = 5;
        assert!(matches!(check_new(&r), Err(MachineError::NotFresh(_))));
        let mut r = record(Initializing);
        r.outcome = Some(outcome());
        assert!(matches!(check_new(&r), Err(MachineError::NotFresh(_))));
        let mut r = record(Initializing);
        r.sealed_secrets = vec![7];
        assert_eq!(
            check_new(&r),
            Err(MachineError::SecretsNotScheduled(Initializing))
        );
    }

    #[test]
    fn new_records_need_a_valid_spec() {
        let mut r = record(Initializing);
        r.spec.command = String::new();
        let err = check_new(&r).unwrap_err();
        assert!(matches!(err, MachineError::Spec { .. }), "{err}");
        assert!(err.to_string().contains("command"), "{err}");
    }
}
