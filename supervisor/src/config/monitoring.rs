//! `monitoring`: how often host and job metrics are sampled, and where Prometheus scrapes them.

use std::net::IpAddr;
use std::time::Duration;

use super::duration::GoDuration;
use super::raw::RawConfig;
use super::validate::Result;
use super::{ConfigError, ListenAddress, MonitoringConfig};

/// Joblet's default for `monitoring.system_interval`.
pub const DEFAULT_SYSTEM_INTERVAL: Duration = Duration::from_secs(10);
/// joblet-rs: default of `monitoring.job_metrics_interval`, Joblet's job sample rate.
pub const DEFAULT_JOB_METRICS_INTERVAL: Duration = Duration::from_secs(5);

/// StreamSystemMetrics counts in whole seconds; a shorter default could not be asked for.
const MIN_SYSTEM_INTERVAL: Duration = Duration::from_secs(1);
/// Below this, sampling every running job's cgroup costs more than the numbers are worth.
const MIN_JOB_METRICS_INTERVAL: Duration = Duration::from_millis(100);
/// A sample an hour apart is no longer monitoring.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

pub(super) fn monitoring(raw: &RawConfig, warnings: &mut Vec<String>) -> Result<MonitoringConfig> {
    let m = &raw.monitoring;
    let metrics_address = match m.bind_address.as_deref().map(str::trim) {
        // Joblet writes an empty address for "no metrics endpoint".
        None | Some("") => None,
        Some(text) => Some(listen_address("monitoring.bind_address", text, warnings)?),
    };
    Ok(MonitoringConfig {
        system_interval: interval(
            "monitoring.system_interval",
            m.system_interval,
            DEFAULT_SYSTEM_INTERVAL,
            MIN_SYSTEM_INTERVAL,
        )?,
        job_metrics_interval: interval(
            "monitoring.job_metrics_interval",
            m.job_metrics_interval,
            DEFAULT_JOB_METRICS_INTERVAL,
            MIN_JOB_METRICS_INTERVAL,
        )?,
        metrics_address,
    })
}

fn interval(
    key: &str,
    value: Option<GoDuration>,
    default: Duration,
    min: Duration,
) -> Result<Duration> {
    let d = value.map_or(default, |d| d.0);
    if d < min || d > MAX_INTERVAL {
        return Err(ConfigError::invalid(
            key,
            format!("{d:?} must be between {min:?} and 1h"),
        ));
    }
    Ok(d)
}

/// `HOST:PORT`, an IPv6 address in brackets (`[::1]:9090`), as Go's `net.Listen` takes it.
fn listen_address(key: &str, text: &str, warnings: &mut Vec<String>) -> Result<ListenAddress> {
    let bad = || {
        ConfigError::invalid(
            key,
            format!("{text:?} must be HOST:PORT (an IPv6 address in brackets: [::1]:9090)"),
        )
    };
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (host, port)
        }
        None => {
            let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
            if host.contains(':') {
                return Err(bad());
            }
            (host, port)
        }
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !valid_host {
        return Err(bad());
    }
    if !is_loopback(host) {
        warnings.push(format!(
            "{key} {text:?}: Prometheus metrics (job ids, resource use) are served over plain \
             HTTP without authentication to anyone who can reach that address; bind to \
             127.0.0.1 unless a firewall guards it"
        ));
    }
    Ok(ListenAddress {
        host: host.to_owned(),
        port,
    })
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Result<ListenAddress>, Vec<String>) {
        let mut warnings = Vec::new();
        (listen_address("k", text, &mut warnings), warnings)
    }

    #[test]
    fn listen_addresses_are_written_as_go_listens() {
        for (text, host, port) in [
            ("127.0.0.1:9090", "127.0.0.1", 9090),
            ("localhost:0", "localhost", 0),
            ("[::1]:9100", "::1", 9100),
        ] {
            let (got, warnings) = parse(text);
            let got = got.unwrap();
            assert_eq!((got.host.as_str(), got.port), (host, port), "{text}");
            assert!(warnings.is_empty(), "{text}: {warnings:?}");
            assert_eq!(got.to_string(), text);
        }
        for bad in [
            "9090",
            ":9090",
            "::1:9090",
            "[::1]9090",
            "[nope]:1",
            "h:70000",
            "a b:1",
        ] {
            assert!(parse(bad).0.is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_public_metrics_address_is_warned_about() {
        for text in [
            "0.0.0.0:9090",
            "[::]:9090",
            "10.1.2.3:9090",
            "metrics.example:9090",
        ] {
            let (got, warnings) = parse(text);
            assert!(got.is_ok(), "{text}");
            assert_eq!(warnings.len(), 1, "{text}");
            assert!(warnings[0].contains("without authentication"), "{text}");
        }
    }
}
