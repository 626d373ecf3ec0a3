//! `GET /v1/jobs/{id}/metrics`: a job's metric samples as Server-Sent Events, history then
//! live until the job ends (the same stream StreamJobMetrics serves), each a `metric` event
//! whose data is a JSON object with the fields of the public `JobMetricsEvent`, then an
//! `end` event with the job's status.

use std::sync::Arc;

use bytes::Bytes;
use joblet_api_proto::{JobMetricsEvent, StreamJobMetricsRequest};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tonic::body::Body;
use tonic::codegen::http::Response;

use super::job_logs::KEEPALIVE;
use super::{end_event, enter, error_event, reply, sse};
use crate::app::App;
use crate::identity::Peer;
use crate::jobs::{lookup, metrics};
use crate::rbac::Rpc;

const BUFFER: usize = 16;

pub async fn serve(app: Arc<App>, peer: Option<Peer>, job: &str) -> Response<Body> {
    let call = match enter(&app, peer, Rpc::StreamJobMetrics) {
        Ok(c) => c,
        Err(s) => return reply::error(&s),
    };
    // The call is audited by the metrics stream, which ends it with the stream's outcome.
    let req = StreamJobMetricsRequest {
        job_uuid: job.to_owned(),
    };
    let mut samples = match metrics::stream_job_metrics(&app, call, req).await {
        Ok(s) => s,
        Err(status) => return reply::error(&status),
    };
    let job = job.to_owned();
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFER);
    tokio::spawn(async move {
        let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            let event = tokio::select! {
                next = samples.next() => match next {
                    Some(Ok(ev)) => {
                        keepalive.reset();
                        metric_event(&ev)
                    }
                    Some(Err(status)) => {
                        let _ = tx.send(error_event(&status)).await;
                        return;
                    }
                    None => break,
                },
                _ = keepalive.tick() => sse::comment("keepalive"),
                _ = tx.closed() => return,
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
        let end = match lookup::find(&app, &job).await {
            Ok(record) => end_event(&app, &record.id, true).await,
            Err(status) => error_event(&status),
        };
        let _ = tx.send(end).await;
    });
    reply::event_stream(rx)
}

/// One sample as a `metric` event; its id is the sample's time (Unix ns).
pub fn metric_event(e: &JobMetricsEvent) -> Bytes {
    let data = serde_json::json!({
        "timestamp": e.timestamp,
        "job_uuid": e.job_uuid,
        "cpu_percent": e.cpu_percent,
        "memory_bytes": e.memory_bytes,
        "memory_limit": e.memory_limit,
        "disk_read_bytes": e.disk_read_bytes,
        "disk_write_bytes": e.disk_write_bytes,
        "net_recv_bytes": e.net_recv_bytes,
        "net_sent_bytes": e.net_sent_bytes,
        "gpu_percent": e.gpu_percent,
        "gpu_memory_bytes": e.gpu_memory_bytes,
    });
    sse::event("metric", Some(&e.timestamp.to_string()), &data.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_become_json_events() {
        let e = JobMetricsEvent {
            timestamp: 1_700_000_000_000_000_000,
            job_uuid: "0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c".into(),
            cpu_percent: 12.5,
            memory_bytes: 1 << 20,
            ..JobMetricsEvent::default()
        };
        let text = String::from_utf8(metric_event(&e).to_vec()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("event: metric"));
        assert_eq!(lines.next(), Some("id: 1700000000000000000"));
        let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["cpu_percent"], 12.5);
        assert_eq!(v["memory_bytes"], 1 << 20);
        assert_eq!(v["job_uuid"], e.job_uuid);
        assert!(text.ends_with("\n\n"));
    }
}
