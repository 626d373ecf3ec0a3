//! GetJobStatus and ListJobs.

use joblet_api_proto::{GetJobStatusRequest, GetJobStatusResponse, Jobs};
use joblet_ipc_proto::job::{JobOutcome, JobState};
use tonic::Status;

use super::convert;
use super::lookup;
use crate::app::App;
use crate::gate::Call;

pub async fn get_job_status(
    app: &App,
    call: &mut Call,
    req: GetJobStatusRequest,
) -> Result<(GetJobStatusResponse, Option<JobOutcome>), Status> {
    let record = lookup::find(app, &req.uuid).await?;
    call.set_job(record.id.as_str());
    Ok((convert::status_response(&record), record.outcome.clone()))
}

pub async fn list_jobs(app: &App) -> Result<Jobs, Status> {
    let mut records = app.state.list_all().await?;
    for r in records.iter_mut() {
        let starting = r.state == JobState::Initializing && app.tracker.is_start_confirmed(&r.id);
        let exiting = !r.state.is_terminal() && app.tracker.is_exit_pending(&r.id);
        if starting || exiting {
            lookup::start_settled(app, &r.id).await;
            lookup::exit_settled(app, &r.id).await;
            if let Ok(fresh) = app.state.get(&r.id).await {
                *r = fresh;
            }
        }
    }
    records.sort_by(|a, b| {
        a.created_ns
            .cmp(&b.created_ns)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(Jobs {
        jobs: records.iter().map(convert::list_item).collect(),
    })
}
