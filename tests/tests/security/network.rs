//! The network: the host's services on loopback and on its own addresses, raw sockets,
//! links.

use std::process::Command;

use joblet_tests::hostile::{assert_lines, line_value, nonce, python_job};
use joblet_tests::{System, require_job_python, require_root};

use super::common::{Daemons, assert_refused, probe};

/// The host's IPv4 addresses other than loopback.
fn host_ipv4() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            f.find(|w| *w == "inet")?;
            let addr = f.next()?.split('/').next()?.to_owned();
            (!addr.starts_with("127.")).then_some(addr)
        })
        .collect()
}

/// Case: reach the frontend from inside: `127.0.0.1:<its port>` is the job's own loopback
/// (nothing listens there), and the host's own addresses have no route.
#[test]
fn the_hosts_services_are_unreachable() {
    require_root!();
    require_job_python!();
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let port: u16 = sys
        .address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let addrs = host_ipv4();
    let body = format!(
        r#"
import socket
def connect(tag, addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((addr, {port}))
        verdict(tag, True)
    except socket.timeout:
        print(tag + "=TIMEOUT", flush=True)
    except OSError as e:
        verdict(tag, False, e.errno)
    finally:
        s.close()
connect("LOOPBACK", "127.0.0.1")
for a in {addrs:?}:
    connect("HOST " + a, a)
links = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
print("LINKS=" + ",".join(sorted(links)))
listening = [l for l in open("/proc/net/tcp").read().splitlines()[1:] if l.split()[3] == "0A"]
print("LISTENING=%d" % len(listening))
"#
    );
    let out = probe(&sys, &python_job(&body));
    assert_lines(&out, &["LOOPBACK=ECONNREFUSED", "LISTENING=0"]);
    let links = line_value(&out, "LINKS").unwrap_or_default();
    assert!(
        links.split(',').all(|l| l == "lo"),
        "the job has links besides its loopback: {links}"
    );
    for a in &addrs {
        assert_refused(
            &out,
            &format!("HOST {a}"),
            &[
                "ENETUNREACH",
                "EHOSTUNREACH",
                "ECONNREFUSED",
                "EACCES",
                "EPERM",
                "TIMEOUT",
            ],
        );
    }
    daemons.assert_intact(&sys);
    sys.stop();
}

/// Case: raw and packet sockets (sniffing, spoofing), and creating or changing links.
#[test]
fn raw_sockets_and_link_changes_are_refused() {
    require_root!();
    require_job_python!();
    let link = format!("jb{}", &nonce().replace('x', "")[..10]);
    let sys = System::start();
    let daemons = Daemons::snap(&sys);
    let body = format!(
        r#"
import socket
attempt("RAW_ICMP", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("RAW_TCP", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP))
attempt("PACKET", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
r = os.system("ip link add {link} type dummy >/dev/null 2>&1")
print("LINK_ADD=" + ("OK" if r == 0 else "FAILED"))
r = os.system("ip link set lo down >/dev/null 2>&1")
print("LINK_DOWN=" + ("OK" if r == 0 else "FAILED"))
"#
    );
    let out = probe(&sys, &python_job(&body));
    assert_lines(
        &out,
        &[
            "RAW_ICMP=EPERM",
            "RAW_TCP=EPERM",
            "PACKET=EPERM",
            "LINK_ADD=FAILED",
            "LINK_DOWN=FAILED",
        ],
    );
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/{link}")).exists(),
        "the job's link appeared on the host"
    );
    daemons.assert_intact(&sys);
    sys.stop();
}
