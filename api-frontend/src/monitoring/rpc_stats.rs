//! RPC latency: a histogram per method and result code, fed by the HTTP layer that sees
//! every call. Labels come from fixed tables (method names of the contract, code names), so
//! the number of series is bounded whatever clients send.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::Code;

use super::exposition::HistogramData;
use crate::audit::code_name;
use crate::rbac::Rpc;

/// Upper bounds of the latency buckets, seconds.
pub const BOUNDS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The label used for paths that name no RPC.
pub const UNKNOWN_METHOD: &str = "unknown";

#[derive(Debug, Clone, Default, PartialEq)]
struct Series {
    /// Observations per bucket (not cumulative); the last slot is above every bound.
    counts: [u64; BOUNDS.len() + 1],
    sum: f64,
}

#[derive(Debug, Default)]
pub struct RpcStats {
    series: Mutex<BTreeMap<(&'static str, &'static str), Series>>,
}

impl RpcStats {
    /// Records one call of `rpc` (None: a path that names no RPC).
    pub fn observe(&self, rpc: Option<Rpc>, code: Code, latency: Duration) {
        let method = rpc.map_or(UNKNOWN_METHOD, Rpc::method);
        let secs = latency.as_secs_f64();
        let slot = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS.len());
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = series.entry((method, code_name(code))).or_default();
        s.counts[slot] += 1;
        s.sum += secs;
    }

    /// Every series, as `(method, code, histogram)`, in a stable order.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, HistogramData<'static>)> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series
            .iter()
            .map(|((method, code), s)| {
                let mut running = 0;
                let cumulative: Vec<u64> = s.counts[..BOUNDS.len()]
                    .iter()
                    .map(|n| {
                        running += n;
                        running
                    })
                    .collect();
                let count = s.counts.iter().sum();
                (
                    *method,
                    *code,
                    HistogramData {
                        bounds: &BOUNDS,
                        cumulative,
                        count,
                        sum: s.sum,
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_per_method_and_code() {
        let s = RpcStats::default();
        s.observe(Some(Rpc::RunJob), Code::Ok, Duration::from_millis(3));
        s.observe(Some(Rpc::RunJob), Code::Ok, Duration::from_millis(200));
        s.observe(Some(Rpc::RunJob), Code::Ok, Duration::from_secs(100));
        s.observe(Some(Rpc::RunJob), Code::NotFound, Duration::from_millis(1));
        s.observe(None, Code::Unimplemented, Duration::ZERO);
        let snap = s.snapshot();
        assert_eq!(snap.len(), 3);
        let (m, c, h) = snap
            .iter()
            .find(|(m, c, _)| *m == "RunJob" && *c == "OK")
            .unwrap();
        assert_eq!((*m, *c), ("RunJob", "OK"));
        assert_eq!(h.count, 3);
        assert_eq!(h.cumulative[0], 0, "le 0.001");
        assert_eq!(h.cumulative[1], 1, "le 0.005");
        assert_eq!(h.cumulative[6], 2, "le 0.25");
        assert_eq!(
            *h.cumulative.last().unwrap(),
            2,
            "100 s is above every bound"
        );
        assert!((h.sum - 100.203).abs() < 1e-9);
        assert!(
            snap.iter()
                .any(|(m, c, _)| *m == UNKNOWN_METHOD && *c == "UNIMPLEMENTED")
        );
    }
}
