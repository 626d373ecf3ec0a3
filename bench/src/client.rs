//! A long-lived gRPC client over mutual TLS, configured from the admin's `rnx-config.yml`
//! that `joblet init` wrote, and the job calls the benchmarks make with it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tonic::codegen::Service;
use tonic::transport::Uri;

use joblet_api_proto::job_service_client::JobServiceClient;
use joblet_api_proto::metadata;
use joblet_api_proto::{
    DeleteJobRequest, EmptyRequest, GetJobLogsRequest, GetJobStatusRequest, RunJobRequest,
    StopJobRequest,
};
use serde::Deserialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The name the server certificate carries (rnx pins the same).
const SERVER_NAME: &str = "joblet";
/// How long a job's final state may lag behind the end of its output.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Uploads are none here; job outputs arrive in chunks of at most 64 KiB.
const MAX_DECODE_BYTES: usize = 16 * 1024 * 1024;
/// As rnx: the largest HTTP/2 frame the server may send (the server flushes after each),
/// and a read buffer under TLS (rustls reads at most 4 KiB a call).
const MAX_FRAME_SIZE: u32 = 1 << 20;
const READ_BUFFER: usize = 64 * 1024;

pub const TERMINAL: &[&str] = &["COMPLETED", "FAILED", "STOPPED", "CANCELED", "TIMEOUT"];

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {}: {source}", path.display())]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a usable rnx config: {reason}", path.display())]
    BadConfig { path: PathBuf, reason: String },
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("{call} failed: {status}")]
    Call {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("job {job} still {state} {limit:?} after its output ended")]
    NotSettled {
        job: String,
        state: String,
        limit: Duration,
    },
}

/// What connecting needs: the node's address and the client's PEM identity and CA.
#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    pub address: String,
    pub cert: String,
    pub key: String,
    pub ca: String,
}

#[derive(Deserialize)]
struct RnxConfig {
    nodes: std::collections::BTreeMap<String, Node>,
}

impl Node {
    /// The `default` node of an rnx-config.yml.
    pub fn from_rnx_config(path: &Path) -> Result<Node, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClientError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        let bad = |reason: String| ClientError::BadConfig {
            path: path.to_owned(),
            reason,
        };
        let cfg: RnxConfig = serde_saphyr::from_str(&text).map_err(|e| bad(e.to_string()))?;
        cfg.nodes
            .get("default")
            .cloned()
            .ok_or_else(|| bad("no node named 'default'".into()))
    }
}

/// How a client learns that a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Follow GetJobLogs to its end, and take the final state from the stream's trailers
    /// (as `rnx job run --follow` does); GetJobStatus only when they tell none.
    Logs,
    /// Follow GetJobLogs to its end, then GetJobStatus (repeated every millisecond until the
    /// state is terminal): a client that ignores the trailers, as Joblet's own.
    LogsThenStatus,
    /// GetJobStatus every 2 ms until the state is terminal.
    Poll,
}

/// A finished job as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub status: String,
    pub exit_code: i32,
}

impl End {
    pub fn completed(&self) -> bool {
        self.status == "COMPLETED" && self.exit_code == 0
    }

    /// The final state our server tells in a log stream's trailers, if it is one.
    fn from_trailers(md: &tonic::metadata::MetadataMap) -> Option<End> {
        let (status, exit_code) =
            metadata::final_state(md).filter(|(s, _)| TERMINAL.contains(s))?;
        Some(End {
            status: status.to_owned(),
            exit_code,
        })
    }
}

/// Plain TCP connections (TCP_NODELAY, as tonic's own connector) with their reads buffered;
/// TLS is layered on top by tonic.
#[derive(Clone, Copy)]
struct BufferedTcp;

type Connecting =
    Pin<Box<dyn Future<Output = std::io::Result<TokioIo<BufReader<TcpStream>>>> + Send>>;

impl Service<Uri> for BufferedTcp {
    type Response = TokioIo<BufReader<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_owned();
            let tcp = TcpStream::connect((host.as_str(), uri.port_u16().unwrap_or(443))).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(BufReader::with_capacity(READ_BUFFER, tcp)))
        })
    }
}

/// One HTTP/2 connection, with its TLS session, kept for many calls.
#[derive(Clone)]
pub struct JobClient {
    inner: JobServiceClient<Channel>,
}

fn call_error(call: &'static str) -> impl FnOnce(tonic::Status) -> ClientError {
    move |status| ClientError::Call {
        call,
        status: Box::new(status),
    }
}

impl JobClient {
    pub async fn connect(node: &Node) -> Result<JobClient, ClientError> {
        let fail = |reason: String| ClientError::Connect {
            address: node.address.clone(),
            reason,
        };
        let tls = ClientTlsConfig::new()
            .domain_name(SERVER_NAME)
            .ca_certificate(Certificate::from_pem(&node.ca))
            .identity(Identity::from_pem(&node.cert, &node.key));
        let channel = Endpoint::from_shared(format!("https://{}", node.address))
            .map_err(|e| fail(e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .max_frame_size(MAX_FRAME_SIZE)
            .tls_config(tls)
            .map_err(|e| fail(e.to_string()))?
            .connect_with_connector(BufferedTcp)
            .await
            .map_err(|e| fail(format!("{e:?}")))?;
        Ok(JobClient {
            inner: JobServiceClient::new(channel).max_decoding_message_size(MAX_DECODE_BYTES),
        })
    }

    /// RunJob; returns the job's id once the server says it started.
    pub async fn run(&mut self, command: &str, args: &[&str]) -> Result<String, ClientError> {
        let req = RunJobRequest {
            command: command.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..RunJobRequest::default()
        };
        let reply = self
            .inner
            .run_job(req)
            .await
            .map_err(call_error("RunJob"))?;
        Ok(reply.into_inner().job_uuid)
    }

    pub async fn status(&mut self, job: &str) -> Result<End, ClientError> {
        let req = GetJobStatusRequest {
            uuid: job.to_owned(),
        };
        let r = self
            .inner
            .get_job_status(req)
            .await
            .map_err(call_error("GetJobStatus"))?
            .into_inner();
        Ok(End {
            status: r.status,
            exit_code: r.exit_code,
        })
    }

    /// Streams the job's output (history, then live until it ends) into `sink`; returns the
    /// byte count.
    pub async fn read_logs(
        &mut self,
        job: &str,
        sink: impl FnMut(&[u8]),
    ) -> Result<u64, ClientError> {
        Ok(self.read_logs_to_end(job, sink).await?.0)
    }

    /// [`JobClient::read_logs`], and the job's final state if the stream's trailers tell it.
    pub async fn read_logs_to_end(
        &mut self,
        job: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(u64, Option<End>), ClientError> {
        let req = GetJobLogsRequest {
            uuid: job.to_owned(),
        };
        let mut stream = self
            .inner
            .get_job_logs(req)
            .await
            .map_err(call_error("GetJobLogs"))?
            .into_inner();
        let mut total = 0u64;
        while let Some(chunk) = stream.message().await.map_err(call_error("GetJobLogs"))? {
            total += chunk.payload.len() as u64;
            sink(&chunk.payload);
        }
        let trailers = stream.trailers().await.map_err(call_error("GetJobLogs"))?;
        Ok((total, trailers.as_ref().and_then(End::from_trailers)))
    }

    /// Waits until the job is in a terminal state.
    pub async fn wait_end(&mut self, job: &str, how: Wait) -> Result<End, ClientError> {
        let pause = match how {
            Wait::Logs => match self.read_logs_to_end(job, |_| {}).await? {
                (_, Some(end)) => return Ok(end),
                (_, None) => Duration::from_millis(1),
            },
            Wait::LogsThenStatus => {
                self.read_logs(job, |_| {}).await?;
                Duration::from_millis(1)
            }
            Wait::Poll => Duration::from_millis(2),
        };
        let start = Instant::now();
        loop {
            let end = self.status(job).await?;
            if TERMINAL.contains(&end.status.as_str()) {
                return Ok(end);
            }
            if start.elapsed() > SETTLE_LIMIT {
                return Err(ClientError::NotSettled {
                    job: job.to_owned(),
                    state: end.status,
                    limit: SETTLE_LIMIT,
                });
            }
            tokio::time::sleep(pause).await;
        }
    }

    pub async fn stop(&mut self, job: &str) -> Result<(), ClientError> {
        let req = StopJobRequest {
            uuid: job.to_owned(),
        };
        self.inner
            .stop_job(req)
            .await
            .map_err(call_error("StopJob"))?;
        Ok(())
    }

    /// `(id, status)` of every job the server knows.
    pub async fn list(&mut self) -> Result<Vec<(String, String)>, ClientError> {
        let jobs = self
            .inner
            .list_jobs(EmptyRequest {})
            .await
            .map_err(call_error("ListJobs"))?
            .into_inner()
            .jobs;
        Ok(jobs.into_iter().map(|j| (j.uuid, j.status)).collect())
    }

    /// Deletes a finished job and its stored output.
    pub async fn delete(&mut self, job: &str) -> Result<(), ClientError> {
        let req = DeleteJobRequest {
            uuid: job.to_owned(),
        };
        self.inner
            .delete_job(req)
            .await
            .map_err(call_error("DeleteJob"))?;
        Ok(())
    }
}
