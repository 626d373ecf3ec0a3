//! The `MonitoringService` of the public contract: the host's status now, and a stream of
//! it at an interval. Both only read, so viewers may call them (see the RBAC table).

use std::sync::Arc;
use std::time::Duration;

use joblet_api_proto::monitoring_service_server::MonitoringService;
use joblet_api_proto::{
    EmptyRequest, StreamMetricsRequest, SystemMetricsResponse, SystemStatusResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use super::collector::Collector;
use super::filter::MetricSet;
use super::source::Source;
use crate::gate::Gate;
use crate::rbac::Rpc;

/// Used when neither the request nor the configuration names an interval.
const FALLBACK_INTERVAL: Duration = Duration::from_secs(5);
/// Longest interval a client may ask for.
const MAX_INTERVAL_SECONDS: i32 = 3600;

pub struct MonitoringApi {
    gate: Gate,
    collector: Arc<Collector>,
    default_interval: Duration,
}

impl MonitoringApi {
    /// `default_interval_ms` is `monitoring.system_interval` (0 = Joblet's 5 s).
    pub fn new(gate: Gate, node_id: String, default_interval_ms: u32) -> MonitoringApi {
        MonitoringApi::with_source(gate, node_id, default_interval_ms, Source::default())
    }

    pub fn with_source(
        gate: Gate,
        node_id: String,
        default_interval_ms: u32,
        source: Source,
    ) -> MonitoringApi {
        let default_interval = match default_interval_ms {
            0 => FALLBACK_INTERVAL,
            ms => Duration::from_millis(u64::from(ms)),
        };
        MonitoringApi {
            gate,
            collector: Arc::new(Collector::new(source, node_id)),
            default_interval,
        }
    }
}

/// The period a stream request asks for; 0 means the configured default.
#[allow(clippy::result_large_err)]
pub fn interval(requested_seconds: i32, default: Duration) -> Result<Duration, Status> {
    match requested_seconds {
        0 => Ok(default),
        s if s < 0 => Err(Status::invalid_argument(format!(
            "interval_seconds: {s} is negative; give a number of seconds from 1 to \
             {MAX_INTERVAL_SECONDS}, or 0 for the server's default"
        ))),
        s if s > MAX_INTERVAL_SECONDS => Err(Status::invalid_argument(format!(
            "interval_seconds: {s} is too long; the most is {MAX_INTERVAL_SECONDS}"
        ))),
        s => Ok(Duration::from_secs(s.unsigned_abs().into())),
    }
}

type MetricsStream = ReceiverStream<Result<SystemMetricsResponse, Status>>;

#[tonic::async_trait]
impl MonitoringService for MonitoringApi {
    async fn get_system_status(
        &self,
        req: Request<EmptyRequest>,
    ) -> Result<Response<SystemStatusResponse>, Status> {
        let call = self.gate.enter(&req, Rpc::GetSystemStatus)?;
        let result = self.collector.status().await;
        call.finish(result.map(Response::new))
    }

    type StreamSystemMetricsStream = MetricsStream;

    async fn stream_system_metrics(
        &self,
        req: Request<StreamMetricsRequest>,
    ) -> Result<Response<MetricsStream>, Status> {
        let call = self.gate.enter(&req, Rpc::StreamSystemMetrics)?;
        let req = req.into_inner();
        let checked = interval(req.interval_seconds, self.default_interval).and_then(|every| {
            let wanted = MetricSet::parse(&req.metric_types).map_err(Status::invalid_argument)?;
            Ok((every, wanted))
        });
        let (every, wanted) = match checked {
            Ok(v) => v,
            Err(s) => return call.finish(Err(s)),
        };
        let (tx, rx) = mpsc::channel(2);
        let collector = self.collector.clone();
        tokio::spawn(async move {
            collector.stream(every, wanted, tx).await;
            // The stream only ends when its client leaves (or on an internal error, which
            // was sent to the client and logged).
            call.finish_with(Code::Cancelled);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let d = Duration::from_secs(10);
        assert_eq!(interval(0, d).unwrap(), d);
        assert_eq!(interval(2, d).unwrap(), Duration::from_secs(2));
        assert_eq!(interval(3600, d).unwrap(), Duration::from_secs(3600));
        for bad in [-1, 3601, i32::MIN, i32::MAX] {
            let e = interval(bad, d).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(
                e.message().starts_with("interval_seconds"),
                "{}",
                e.message()
            );
        }
    }
}
