//! Finding a job from what a client typed: a full id or a unique prefix of one.

use std::time::Duration;

use joblet_ipc_proto::RemoteErrorKind;
use joblet_ipc_proto::job::{JobId, JobRecord};
use tonic::Status;

use crate::app::App;
use crate::errors::LinkError;

/// Checks a client's job id or prefix and normalises it to lowercase.
#[allow(clippy::result_large_err)]
pub fn normalise_prefix(input: &str) -> Result<String, Status> {
    let s = input.trim().to_ascii_lowercase();
    if s.is_empty() {
        return Err(Status::invalid_argument(
            "invalid uuid: the job id is empty",
        ));
    }
    let ok = s.len() <= JobId::LEN && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if !ok {
        let shown: String = input.chars().take(40).collect();
        return Err(Status::invalid_argument(format!(
            "invalid uuid: {shown:?} is not a job id or the start of one"
        )));
    }
    Ok(s)
}

/// How long a lookup waits for the record of a start the client was already told about, or
/// of an exit the spawner already reported.
const RECORD_WAIT: Duration = Duration::from_secs(2);

/// The record of the job `input` names (a whole id, or a unique prefix of one).
pub async fn find(app: &App, input: &str) -> Result<JobRecord, Status> {
    find_settled(app, input, true).await
}

/// [`find`] for a read of the job's output, which does not wait for a reported exit's record:
/// a job still shown running is followed, and a followed read waits for that record itself
/// before it ends (`LogRead::settle`). A read asked for right after a short job's start would
/// otherwise wait for the record before sending anything.
pub async fn find_for_output(app: &App, input: &str) -> Result<JobRecord, Status> {
    find_settled(app, input, false).await
}

async fn find_settled(app: &App, input: &str, exit: bool) -> Result<JobRecord, Status> {
    let prefix = normalise_prefix(input)?;
    let id = match JobId::parse(&prefix) {
        // A whole id needs no resolving: `get` says as well whether it exists.
        Ok(id) => id,
        Err(_) => app
            .state
            .resolve(&prefix)
            .await
            .map_err(|e| not_found_as(e, &prefix))?,
    };
    start_settled(app, &id).await;
    if exit {
        exit_settled(app, &id).await;
    }
    app.state
        .get(&id)
        .await
        .map_err(|e| not_found_as(e, &prefix))
}

/// Returns once the start of `id` is recorded if RunJob already answered RUNNING for it (at
/// once otherwise): a client must not read INITIALIZING after being told RUNNING.
pub async fn start_settled(app: &App, id: &JobId) {
    if app.tracker.is_start_confirmed(id) {
        let _ = tokio::time::timeout(RECORD_WAIT, app.tracker.start_recorded(id)).await;
    }
}

/// Returns once the exit of `id` is recorded if the spawner already reported it (at once
/// otherwise): a client polling the job's status reads the final state as soon as the job
/// has ended, rather than RUNNING once more.
pub async fn exit_settled(app: &App, id: &JobId) {
    if app.tracker.is_exit_pending(id) {
        let _ = tokio::time::timeout(RECORD_WAIT, app.tracker.until_ended(id)).await;
    }
}

fn not_found_as(e: LinkError, shown: &str) -> Status {
    if e.remote_kind() == Some(RemoteErrorKind::NotFound) {
        Status::not_found(format!("job {shown} not found"))
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn prefixes_are_checked_and_lowercased() {
        assert_eq!(normalise_prefix(" 0B7C ").unwrap(), "0b7c");
        assert_eq!(
            normalise_prefix("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c").unwrap(),
            "0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c"
        );
        for bad in [
            "",
            "  ",
            "../x",
            "0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c0",
            "xyz",
            "0b7c%",
        ] {
            let e = normalise_prefix(bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}");
        }
    }
}
