//! Network interfaces: counters from `/proc/net/dev` (rates between two readings) and
//! addresses from `getifaddrs`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use joblet_api_proto::NetworkMetrics;

use super::cpu::round2;
use super::memory::to_i64;
use super::source::CollectError;

const NET_DEV: &str = "/proc/net/dev";

/// One interface's cumulative counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

pub fn parse_net_dev(text: &str) -> Result<Vec<IfCounters>, CollectError> {
    let mut out = Vec::new();
    // Two header lines, then `name: 16 numbers`.
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let n: Vec<u64> = rest
            .split_ascii_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| {
                CollectError::parse(NET_DEV, format!("non-numeric counter for {}", name.trim()))
            })?;
        if n.len() < 16 {
            return Err(CollectError::parse(
                NET_DEV,
                format!("{} counters for {}, expected 16", n.len(), name.trim()),
            ));
        }
        out.push(IfCounters {
            name: name.trim().to_owned(),
            rx_bytes: n[0],
            rx_packets: n[1],
            rx_errors: n[2],
            rx_drops: n[3],
            tx_bytes: n[8],
            tx_packets: n[9],
            tx_errors: n[10],
            tx_drops: n[11],
        });
    }
    Ok(out)
}

/// The addresses of every interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    pub ips: BTreeMap<String, Vec<IpAddr>>,
    pub macs: BTreeMap<String, String>,
}

impl Addresses {
    /// Reads them with `getifaddrs`; an error leaves them empty (addresses are decoration).
    pub fn read() -> Addresses {
        let mut out = Addresses::default();
        let Ok(list) = nix::ifaddrs::getifaddrs() else {
            return out;
        };
        for ifa in list {
            let Some(addr) = ifa.address else { continue };
            if let Some(v4) = addr.as_sockaddr_in() {
                out.add_ip(&ifa.interface_name, IpAddr::V4(v4.ip()));
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                out.add_ip(&ifa.interface_name, IpAddr::V6(v6.ip()));
            } else if let Some(mac) = addr.as_link_addr().and_then(|l| l.addr()) {
                out.add_mac(&ifa.interface_name, mac);
            }
        }
        out
    }

    pub fn add_ip(&mut self, interface: &str, ip: IpAddr) {
        self.ips.entry(interface.to_owned()).or_default().push(ip);
    }

    pub fn add_mac(&mut self, interface: &str, mac: [u8; 6]) {
        if mac != [0; 6] {
            let text = mac.map(|b| format!("{b:02x}")).join(":");
            self.macs.insert(interface.to_owned(), text);
        }
    }

    /// Addresses other hosts could reach this one on: no loopback, no link-local.
    pub fn server_ips(&self) -> Vec<String> {
        let mut ips: Vec<String> = self
            .ips
            .values()
            .flatten()
            .filter(|ip| is_routable(ip))
            .map(IpAddr::to_string)
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }

    pub fn mac_addresses(&self) -> Vec<String> {
        let mut macs: Vec<String> = self.macs.values().cloned().collect();
        macs.sort();
        macs.dedup();
        macs
    }
}

fn is_routable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

/// The public interface messages; rates are per second since `prev` (zero without it).
/// The loopback interface is left out: it is traffic of the host with itself.
pub fn metrics(
    prev: Option<&[IfCounters]>,
    cur: &[IfCounters],
    elapsed_secs: f64,
    addrs: &Addresses,
) -> Vec<NetworkMetrics> {
    cur.iter()
        .filter(|c| c.name != "lo")
        .map(|c| {
            let before = prev.and_then(|p| p.iter().find(|p| p.name == c.name));
            let rate = |now: u64, then: Option<u64>| match then {
                Some(then) if elapsed_secs > 0.0 => {
                    round2(now.saturating_sub(then) as f64 / elapsed_secs)
                }
                _ => 0.0,
            };
            NetworkMetrics {
                interface: c.name.clone(),
                bytes_received: to_i64(c.rx_bytes),
                bytes_sent: to_i64(c.tx_bytes),
                packets_received: to_i64(c.rx_packets),
                packets_sent: to_i64(c.tx_packets),
                errors_in: to_i64(c.rx_errors),
                errors_out: to_i64(c.tx_errors),
                drops_in: to_i64(c.rx_drops),
                drops_out: to_i64(c.tx_drops),
                receive_rate: rate(c.rx_bytes, before.map(|b| b.rx_bytes)),
                transmit_rate: rate(c.tx_bytes, before.map(|b| b.tx_bytes)),
                ip_addresses: addrs
                    .ips
                    .get(&c.name)
                    .map(|v| v.iter().map(IpAddr::to_string).collect())
                    .unwrap_or_default(),
                mac_address: addrs.macs.get(&c.name).cloned().unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Inter-|   Receive                                                |  Transmit\n \
        face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

    #[test]
    fn parses_the_captured_net_dev() {
        let ifs = parse_net_dev(include_str!("testdata/net_dev")).unwrap();
        let names: Vec<&str> = ifs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo", "ifb0", "ifb1", "eth0"]);
        assert_eq!(ifs[3].rx_bytes, 257889788);
        assert_eq!(ifs[3].tx_packets, 7763);
    }

    #[test]
    fn rates_between_two_readings() {
        let a = format!(
            "{HEADER}  eth0: 1000 10 1 2 0 0 0 0 5000 50 3 4 0 0 0 0\n    lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n"
        );
        let b = format!(
            "{HEADER}  eth0: 3000 20 1 2 0 0 0 0 6000 60 3 4 0 0 0 0\n    lo: 9 9 0 0 0 0 0 0 9 9 0 0 0 0 0 0\n  veth9: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n"
        );
        let (a, b) = (parse_net_dev(&a).unwrap(), parse_net_dev(&b).unwrap());
        let mut addrs = Addresses::default();
        addrs.add_ip("eth0", "192.0.2.7".parse().unwrap());
        addrs.add_mac("eth0", [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let m = metrics(Some(&a), &b, 2.0, &addrs);
        assert_eq!(m.len(), 2, "lo is left out");
        assert_eq!(m[0].interface, "eth0");
        assert_eq!(m[0].receive_rate, 1000.0);
        assert_eq!(m[0].transmit_rate, 500.0);
        assert_eq!((m[0].errors_in, m[0].drops_in), (1, 2));
        assert_eq!((m[0].errors_out, m[0].drops_out), (3, 4));
        assert_eq!(m[0].ip_addresses, vec!["192.0.2.7"]);
        assert_eq!(m[0].mac_address, "52:54:00:12:34:56");
        // A new interface has no rate yet.
        assert_eq!((m[1].receive_rate, m[1].transmit_rate), (0.0, 0.0));
        assert!(
            metrics(None, &b, 2.0, &addrs)
                .iter()
                .all(|n| n.receive_rate == 0.0)
        );
    }

    #[test]
    fn malformed_counters_are_refused() {
        assert!(parse_net_dev(&format!("{HEADER}  eth0: 1 2 3\n")).is_err());
        assert!(
            parse_net_dev(&format!(
                "{HEADER}  eth0: 1 x 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
            ))
            .is_err()
        );
        assert_eq!(parse_net_dev(HEADER).unwrap(), vec![]);
    }

    #[test]
    fn server_ips_leave_out_local_addresses() {
        let mut a = Addresses::default();
        for (i, ip) in [
            ("lo", "127.0.0.1"),
            ("lo", "::1"),
            ("eth0", "10.1.2.3"),
            ("eth0", "fe80::1"),
            ("eth0", "2001:db8::5"),
            ("eth1", "169.254.1.1"),
            ("eth1", "10.1.2.3"),
        ] {
            a.add_ip(i, ip.parse().unwrap());
        }
        a.add_mac("lo", [0; 6]);
        a.add_mac("eth1", [2, 0, 0, 0, 0, 1]);
        a.add_mac("eth0", [2, 0, 0, 0, 0, 1]);
        assert_eq!(a.server_ips(), vec!["10.1.2.3", "2001:db8::5"]);
        assert_eq!(a.mac_addresses(), vec!["02:00:00:00:00:01"]);
    }

    #[test]
    fn reads_this_hosts_addresses() {
        let a = Addresses::read();
        assert!(
            a.ips
                .get("lo")
                .is_some_and(|v| v.iter().any(|ip| ip.is_loopback())),
            "{a:?}"
        );
    }
}
