//! A small in-test gRPC server speaking the real generated `JobService` and
//! `MonitoringService` code over mutual TLS, so the client is tested against real TLS,
//! real HTTP/2 and real streaming. Its "jobs" are scripted: a job prints its arguments
//! (one chunk per argument) and exits with the code in its `EXIT` variable; a job whose
//! command is `forever` never ends; a job with a schedule waits as SCHEDULED. Each job has
//! two metric samples, unless its command is `nometrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use joblet_api_proto::job_service_server::{JobService, JobServiceServer};
use joblet_api_proto::monitoring_service_server::{MonitoringService, MonitoringServiceServer};
use joblet_api_proto::*;
use tokio_stream::Stream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::pki::Pair;

pub const SERVER_VERSION: &str = "test-1.2.3";
/// How long after its output ends a job's final state is recorded (as with the real
/// system, where the exit report can trail the closing pipes).
const SETTLE_DELAY: Duration = Duration::from_millis(300);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Debug, Clone)]
pub struct JobEntry {
    pub request: RunJobRequest,
    pub status: String,
    pub exit_code: i32,
}

#[derive(Default)]
pub struct State {
    pub jobs: Mutex<BTreeMap<String, JobEntry>>,
    next: Mutex<u64>,
    /// Answer CancelJob with UNIMPLEMENTED, as Joblet's own server does.
    pub cancel_unimplemented: std::sync::atomic::AtomicBool,
    /// The last StreamSystemMetrics request.
    pub watch_request: Mutex<Option<StreamMetricsRequest>>,
    /// GetJobStatus calls so far.
    pub status_calls: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct Service {
    state: Arc<State>,
    viewer_der: Vec<u8>,
}

impl Service {
    fn is_viewer<T>(&self, req: &Request<T>) -> bool {
        req.peer_certs()
            .and_then(|certs| {
                certs
                    .first()
                    .map(|c| c.as_ref() == self.viewer_der.as_slice())
            })
            .unwrap_or(false)
    }

    fn deny_viewer<T>(&self, req: &Request<T>, method: &str) -> Result<(), Status> {
        if self.is_viewer(req) {
            return Err(Status::permission_denied(format!(
                "permission denied: role viewer may not {method}"
            )));
        }
        Ok(())
    }

    fn resolve(&self, prefix: &str) -> Result<(String, JobEntry), Status> {
        let jobs = self.state.jobs.lock().unwrap();
        let found: Vec<_> = jobs
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .collect();
        match found.as_slice() {
            [(id, job)] if !prefix.is_empty() => Ok(((*id).clone(), (*job).clone())),
            _ => Err(Status::not_found(format!("job {prefix} not found"))),
        }
    }

    fn set(&self, id: &str, status: &str, exit_code: i32) {
        if let Some(job) = self.state.jobs.lock().unwrap().get_mut(id) {
            job.status = status.to_string();
            job.exit_code = exit_code;
        }
    }
}

fn intended_exit(req: &RunJobRequest) -> i32 {
    req.environment
        .get("EXIT")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tonic::async_trait]
impl JobService for Service {
    async fn run_job(
        &self,
        req: Request<RunJobRequest>,
    ) -> Result<Response<RunJobResponse>, Status> {
        self.deny_viewer(&req, "RunJob")?;
        let request = req.into_inner();
        if request.gpu_count > 0 {
            return Err(Status::invalid_argument("this host has no GPU support"));
        }
        let id = {
            let mut next = self.state.next.lock().unwrap();
            *next += 1;
            format!("{:08x}-0000-4000-8000-{:012x}", *next, *next)
        };
        let status = if request.schedule.is_empty() {
            "RUNNING"
        } else {
            "SCHEDULED"
        };
        self.state.jobs.lock().unwrap().insert(
            id.clone(),
            JobEntry {
                request,
                status: status.into(),
                exit_code: 0,
            },
        );
        Ok(Response::new(RunJobResponse {
            job_uuid: id,
            status: status.into(),
        }))
    }

    async fn get_job_status(
        &self,
        req: Request<GetJobStatusRequest>,
    ) -> Result<Response<GetJobStatusResponse>, Status> {
        self.state
            .status_calls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (id, job) = self.resolve(&req.get_ref().uuid)?;
        let r = &job.request;
        let terminal = !matches!(job.status.as_str(), "RUNNING" | "SCHEDULED");
        let mut response = Response::new(GetJobStatusResponse {
            uuid: id,
            command: r.command.clone(),
            args: r.args.clone(),
            max_cpu: r.max_cpu,
            max_memory: r.max_memory,
            status: job.status.clone(),
            start_time: "2026-11-23T16:20:50Z".into(),
            end_time: if terminal {
                "2026-11-23T16:20:52Z".into()
            } else {
                String::new()
            },
            exit_code: job.exit_code,
            environment: r.environment.clone(),
            secret_environment: r
                .secret_environment
                .keys()
                .map(|k| (k.clone(), "***".to_string()))
                .collect(),
            network: r.network.clone(),
            timeout: r.timeout.clone(),
            ..Default::default()
        });
        if terminal {
            let reason = if job.status == "STOPPED" {
                "stopped"
            } else {
                "exited"
            };
            response
                .metadata_mut()
                .insert("joblet-end-reason", reason.parse().unwrap());
        }
        Ok(response)
    }

    async fn stop_job(
        &self,
        req: Request<StopJobRequest>,
    ) -> Result<Response<StopJobResponse>, Status> {
        self.deny_viewer(&req, "StopJob")?;
        let (id, job) = self.resolve(&req.get_ref().uuid)?;
        if job.status == "SCHEDULED" {
            self.set(&id, "CANCELED", 0);
            return Ok(Response::new(StopJobResponse {
                uuid: id,
                ..Default::default()
            }));
        }
        if job.status != "RUNNING" {
            return Err(Status::failed_precondition(format!(
                "job {id} is not running"
            )));
        }
        self.set(&id, "STOPPED", 143);
        Ok(Response::new(StopJobResponse {
            uuid: id,
            status: "STOPPED".into(),
            ..Default::default()
        }))
    }

    async fn cancel_job(
        &self,
        req: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        use std::sync::atomic::Ordering;
        if self.state.cancel_unimplemented.load(Ordering::Relaxed) {
            return Err(Status::unimplemented("CancelJob"));
        }
        self.deny_viewer(&req, "CancelJob")?;
        let (id, job) = self.resolve(&req.get_ref().uuid)?;
        if job.status != "SCHEDULED" {
            return Err(Status::failed_precondition(format!(
                "job {id} is {}; only a SCHEDULED job can be canceled",
                job.status
            )));
        }
        self.set(&id, "CANCELED", 0);
        Ok(Response::new(CancelJobResponse {
            uuid: id,
            status: "CANCELED".into(),
        }))
    }

    async fn delete_job(
        &self,
        req: Request<DeleteJobRequest>,
    ) -> Result<Response<DeleteJobResponse>, Status> {
        self.deny_viewer(&req, "DeleteJob")?;
        let (id, job) = self.resolve(&req.get_ref().uuid)?;
        if job.status == "RUNNING" {
            return Err(Status::failed_precondition(format!(
                "job {id} is RUNNING; stop it first"
            )));
        }
        self.state.jobs.lock().unwrap().remove(&id);
        Ok(Response::new(DeleteJobResponse {
            uuid: id,
            success: true,
            message: "job and logs deleted".into(),
        }))
    }

    async fn delete_all_jobs(
        &self,
        req: Request<DeleteAllJobsRequest>,
    ) -> Result<Response<DeleteAllJobsResponse>, Status> {
        self.deny_viewer(&req, "DeleteAllJobs")?;
        let mut jobs = self.state.jobs.lock().unwrap();
        let before = jobs.len();
        jobs.retain(|_, j| matches!(j.status.as_str(), "RUNNING" | "SCHEDULED"));
        let deleted = (before - jobs.len()) as i32;
        Ok(Response::new(DeleteAllJobsResponse {
            success: true,
            message: format!("deleted {deleted} jobs"),
            deleted_count: deleted,
            skipped_count: jobs.len() as i32,
        }))
    }

    type GetJobLogsStream = BoxStream<DataChunk>;

    async fn get_job_logs(
        &self,
        req: Request<GetJobLogsRequest>,
    ) -> Result<Response<Self::GetJobLogsStream>, Status> {
        let (id, job) = self.resolve(&req.get_ref().uuid)?;
        let chunks: Vec<Result<DataChunk, Status>> = job
            .request
            .args
            .iter()
            .map(|a| {
                Ok(DataChunk {
                    payload: format!("{a}\n").into_bytes(),
                })
            })
            .collect();
        if job.request.command == "forever" {
            // A job that never ends: its output stays open after the first chunks.
            let live =
                tokio_stream::StreamExt::chain(tokio_stream::iter(chunks), tokio_stream::pending());
            return Ok(Response::new(Box::pin(live)));
        }
        if let Some(trailers) = job.request.environment.get("TRAILERS") {
            // Our server's way: the final state is recorded before the stream ends, and
            // told in its trailers (`TRAILERS` holds them as `status exit-code`).
            let (status, exit) = trailers.split_once(' ').unwrap_or((trailers, ""));
            self.set(&id, status, exit.parse().unwrap_or(-1));
            let mut md = tonic::metadata::MetadataMap::new();
            md.insert("joblet-final-status", status.parse().unwrap());
            md.insert("joblet-exit-code", exit.parse().unwrap());
            md.insert("joblet-end-reason", "signaled".parse().unwrap());
            let end = Err(Status::with_metadata(tonic::Code::Ok, "", md));
            let stream = tokio_stream::iter(chunks.into_iter().chain([end]));
            return Ok(Response::new(Box::pin(stream)));
        }
        if job.status == "RUNNING" {
            let service = self.clone();
            let exit = intended_exit(&job.request);
            tokio::spawn(async move {
                tokio::time::sleep(SETTLE_DELAY).await;
                let status = if exit == 0 { "COMPLETED" } else { "FAILED" };
                service.set(&id, status, exit);
            });
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn list_jobs(&self, req: Request<EmptyRequest>) -> Result<Response<Jobs>, Status> {
        let _ = req;
        let jobs = self.state.jobs.lock().unwrap();
        let jobs = jobs
            .iter()
            .map(|(id, j)| Job {
                uuid: id.clone(),
                command: j.request.command.clone(),
                args: j.request.args.clone(),
                status: j.status.clone(),
                start_time: "2026-11-23T16:20:50Z".into(),
                exit_code: j.exit_code,
                max_memory: j.request.max_memory,
                ..Default::default()
            })
            .collect();
        Ok(Response::new(Jobs { jobs }))
    }

    type StreamJobMetricsStream = BoxStream<JobMetricsEvent>;
    async fn stream_job_metrics(
        &self,
        req: Request<StreamJobMetricsRequest>,
    ) -> Result<Response<Self::StreamJobMetricsStream>, Status> {
        let (id, job) = self.resolve(&req.get_ref().job_uuid)?;
        let samples: Vec<Result<JobMetricsEvent, Status>> = if job.request.command == "nometrics" {
            Vec::new()
        } else {
            (1..=2)
                .map(|i| {
                    Ok(JobMetricsEvent {
                        timestamp: 1_795_450_850_000_000_000 + i * 5_000_000_000,
                        job_uuid: id.clone(),
                        cpu_percent: 10.0 * i as f64,
                        memory_bytes: i << 20,
                        memory_limit: i64::from(job.request.max_memory) << 20,
                        disk_write_bytes: 4096 * i,
                        ..Default::default()
                    })
                })
                .collect()
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(samples))))
    }

    type GetJobMetricsStream = BoxStream<JobMetricsEvent>;
    async fn get_job_metrics(
        &self,
        _: Request<GetJobMetricsRequest>,
    ) -> Result<Response<Self::GetJobMetricsStream>, Status> {
        Err(Status::unimplemented("metrics"))
    }

    type StreamJobTelematicsStream = BoxStream<TelematicsEvent>;
    async fn stream_job_telematics(
        &self,
        _: Request<StreamJobTelematicsRequest>,
    ) -> Result<Response<Self::StreamJobTelematicsStream>, Status> {
        Err(Status::unimplemented("telematics"))
    }

    type GetJobTelematicsStream = BoxStream<TelematicsEvent>;
    async fn get_job_telematics(
        &self,
        _: Request<GetJobTelematicsRequest>,
    ) -> Result<Response<Self::GetJobTelematicsStream>, Status> {
        Err(Status::unimplemented("telematics"))
    }
}

#[tonic::async_trait]
impl MonitoringService for Service {
    async fn get_system_status(
        &self,
        _: Request<EmptyRequest>,
    ) -> Result<Response<SystemStatusResponse>, Status> {
        Ok(Response::new(SystemStatusResponse {
            timestamp: "2026-11-23T16:20:50Z".into(),
            available: true,
            host: Some(HostInfo {
                hostname: "test-host".into(),
                os: "linux".into(),
                ..Default::default()
            }),
            cpu: Some(CpuMetrics {
                cores: 2,
                usage_percent: 12.5,
                load_average: vec![0.1, 0.2, 0.3],
                ..Default::default()
            }),
            memory: Some(MemoryMetrics {
                total_bytes: 4 << 30,
                used_bytes: 1 << 30,
                usage_percent: 25.0,
                ..Default::default()
            }),
            processes: Some(ProcessMetrics {
                total_processes: 99,
                top_by_cpu: vec![ProcessInfo {
                    pid: 7,
                    name: "busy".into(),
                    command: "busy --loop".into(),
                    cpu_percent: 50.0,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            server_version: Some(ServerVersionInfo {
                version: SERVER_VERSION.into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    type StreamSystemMetricsStream = BoxStream<SystemMetricsResponse>;
    async fn stream_system_metrics(
        &self,
        req: Request<StreamMetricsRequest>,
    ) -> Result<Response<Self::StreamSystemMetricsStream>, Status> {
        *self.state.watch_request.lock().unwrap() = Some(req.into_inner());
        // Samples at once, then an open stream: the client decides when to stop.
        let samples = (1..=3).map(|i| {
            Ok(SystemMetricsResponse {
                timestamp: format!("2026-11-23T16:20:5{i}Z"),
                host: Some(HostInfo {
                    hostname: "test-host".into(),
                    ..Default::default()
                }),
                cpu: Some(CpuMetrics {
                    cores: 2,
                    usage_percent: 10.0 * f64::from(i),
                    ..Default::default()
                }),
                ..Default::default()
            })
        });
        let live =
            tokio_stream::StreamExt::chain(tokio_stream::iter(samples), tokio_stream::pending());
        Ok(Response::new(Box::pin(live)))
    }
}

/// The running server; dropping it stops it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    /// Serves on 127.0.0.1:<free port> with `server` as identity, requiring client
    /// certificates signed by `ca_pem`; `viewer` is refused every change.
    pub fn start(server: &Pair, ca_pem: &str, viewer: &Pair) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(State::default());
        let service = Service {
            state: state.clone(),
            viewer_der: viewer.der.clone(),
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&server.cert, &server.key))
            .client_ca_root(Certificate::from_pem(ca_pem));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(JobServiceServer::new(service.clone()))
            .add_service(MonitoringServiceServer::new(service));
        runtime.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        TestServer {
            addr,
            state,
            shutdown: Some(tx),
            runtime: Some(runtime),
        }
    }

    pub fn jobs(&self) -> BTreeMap<String, JobEntry> {
        self.state.jobs.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}
