//! How a job ended, as gRPC metadata (the names are `joblet_api_proto::metadata`'s):
//!
//! - GetJobStatus' response headers: why it ended (a code from `EndReason::code`, the
//!   signal, a detail);
//! - the trailers of a GetJobLogs stream that ends with the job ended: the same, and its
//!   final status and exit code, so that a client following a job learns its final state
//!   without a GetJobStatus call.

use joblet_api_proto::metadata::{END_DETAIL, END_REASON, END_SIGNAL, EXIT_CODE, FINAL_STATUS};
use joblet_ipc_proto::job::{JobOutcome, JobState};
use tonic::metadata::{MetadataMap, MetadataValue};
/// The longest `joblet-end-detail` sent, in characters.
const DETAIL_MAX: usize = 512;

/// Adds why the job ended, if it did.
pub fn end_headers(md: &mut MetadataMap, end: Option<&JobOutcome>) {
    let Some(end) = end else { return };
    md.insert(END_REASON, MetadataValue::from_static(end.reason.code()));
    if let Some(sig) = end.signal {
        md.insert(END_SIGNAL, MetadataValue::from(sig));
    }
    let detail: String = end
        .message
        .chars()
        .take(DETAIL_MAX)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if let Ok(v) = MetadataValue::try_from(detail.trim())
        && !detail.trim().is_empty()
    {
        md.insert(END_DETAIL, v);
    }
}

/// The trailers of a log stream that ends with the job: its final status (as GetJobStatus
/// names it), exit code and end. `None` while the job is not terminal (a stream can end
/// before the exit is recorded: the client must then ask GetJobStatus).
pub fn final_trailers(state: JobState, outcome: Option<&JobOutcome>) -> Option<MetadataMap> {
    if !state.is_terminal() {
        return None;
    }
    let mut md = MetadataMap::new();
    md.insert(FINAL_STATUS, MetadataValue::from_static(state.as_str()));
    // As GetJobStatus reports it (`convert::exit_code`).
    md.insert(
        EXIT_CODE,
        MetadataValue::from(outcome.map_or(0, |o| o.exit_code)),
    );
    end_headers(&mut md, outcome);
    Some(md)
}
