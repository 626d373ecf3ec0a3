//! The `JobService` of the public contract: every method passes the gate, then runs its
//! handler; the call's audit line is written when it ends.

use std::sync::Arc;

use joblet_api_proto::job_service_server::JobService;
use joblet_api_proto::*;
use tonic::{Request, Response, Status};

use super::end_metadata::end_headers;
use super::logs::LogStream;
use super::metrics::MetricsStream;
use super::{logs, manage, metrics, query, run};
use crate::app::App;
use crate::gate::not_implemented;
use crate::rbac::Rpc;

pub struct JobApi {
    app: Arc<App>,
}

impl JobApi {
    pub fn new(app: Arc<App>) -> JobApi {
        JobApi { app }
    }
}

type Stream<T> = tokio_stream::Empty<Result<T, Status>>;

const NO_TELEMATICS: &str = "kernel event telematics are not implemented yet";

#[tonic::async_trait]
impl JobService for JobApi {
    async fn run_job(
        &self,
        req: Request<RunJobRequest>,
    ) -> Result<Response<RunJobResponse>, Status> {
        let mut call = self.app.gate.enter(&req, Rpc::RunJob)?;
        let result = run::run_job(&self.app, &mut call, req.into_inner()).await;
        call.finish(result.map(Response::new))
    }

    async fn get_job_status(
        &self,
        req: Request<GetJobStatusRequest>,
    ) -> Result<Response<GetJobStatusResponse>, Status> {
        let mut call = self.app.gate.enter(&req, Rpc::GetJobStatus)?;
        let result = query::get_job_status(&self.app, &mut call, req.into_inner()).await;
        call.finish(result.map(|(status, end)| {
            let mut response = Response::new(status);
            end_headers(response.metadata_mut(), end.as_ref());
            response
        }))
    }

    async fn stop_job(
        &self,
        req: Request<StopJobRequest>,
    ) -> Result<Response<StopJobResponse>, Status> {
        let mut call = self.app.gate.enter(&req, Rpc::StopJob)?;
        let result = manage::stop_job(&self.app, &mut call, req.into_inner()).await;
        call.finish(result.map(Response::new))
    }

    async fn cancel_job(
        &self,
        req: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let mut call = self.app.gate.enter(&req, Rpc::CancelJob)?;
        let result = manage::cancel_job(&self.app, &mut call, req.into_inner()).await;
        call.finish(result.map(Response::new))
    }

    async fn delete_job(
        &self,
        req: Request<DeleteJobRequest>,
    ) -> Result<Response<DeleteJobResponse>, Status> {
        let mut call = self.app.gate.enter(&req, Rpc::DeleteJob)?;
        let result = manage::delete_job(&self.app, &mut call, req.into_inner()).await;
        call.finish(result.map(Response::new))
    }

    async fn delete_all_jobs(
        &self,
        req: Request<DeleteAllJobsRequest>,
    ) -> Result<Response<DeleteAllJobsResponse>, Status> {
        let call = self.app.gate.enter(&req, Rpc::DeleteAllJobs)?;
        let result = manage::delete_all_jobs(&self.app).await;
        call.finish(result.map(Response::new))
    }

    type GetJobLogsStream = LogStream;

    async fn get_job_logs(
        &self,
        req: Request<GetJobLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        let call = self.app.gate.enter(&req, Rpc::GetJobLogs)?;
        logs::get_job_logs(&self.app, call, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_jobs(&self, req: Request<EmptyRequest>) -> Result<Response<Jobs>, Status> {
        let call = self.app.gate.enter(&req, Rpc::ListJobs)?;
        let result = query::list_jobs(&self.app).await;
        call.finish(result.map(Response::new))
    }

    type StreamJobMetricsStream = MetricsStream;

    async fn stream_job_metrics(
        &self,
        req: Request<StreamJobMetricsRequest>,
    ) -> Result<Response<MetricsStream>, Status> {
        let call = self.app.gate.enter(&req, Rpc::StreamJobMetrics)?;
        metrics::stream_job_metrics(&self.app, call, req.into_inner())
            .await
            .map(Response::new)
    }

    type GetJobMetricsStream = MetricsStream;

    async fn get_job_metrics(
        &self,
        req: Request<GetJobMetricsRequest>,
    ) -> Result<Response<MetricsStream>, Status> {
        let call = self.app.gate.enter(&req, Rpc::GetJobMetrics)?;
        metrics::get_job_metrics(&self.app, call, req.into_inner())
            .await
            .map(Response::new)
    }

    type StreamJobTelematicsStream = Stream<TelematicsEvent>;

    async fn stream_job_telematics(
        &self,
        req: Request<StreamJobTelematicsRequest>,
    ) -> Result<Response<Self::StreamJobTelematicsStream>, Status> {
        Err(not_implemented(
            &self.app.gate,
            &req,
            Rpc::StreamJobTelematics,
            NO_TELEMATICS,
        ))
    }

    type GetJobTelematicsStream = Stream<TelematicsEvent>;

    async fn get_job_telematics(
        &self,
        req: Request<GetJobTelematicsRequest>,
    ) -> Result<Response<Self::GetJobTelematicsStream>, Status> {
        Err(not_implemented(
            &self.app.gate,
            &req,
            Rpc::GetJobTelematics,
            NO_TELEMATICS,
        ))
    }
}
