//! The isolation probe: a shell script run in place of `/bin/true` on a sample of runs, for
//! us and for every peer. It prints its pid, its uid and its namespaces; a run counts only if
//! every namespace differs from the benchmark's own (and, for us, the command is PID 1 and
//! not root). The namespaces it saw are kept so the teardown check can prove they are gone.

use std::collections::BTreeMap;

/// `sh -c PROBE_SCRIPT`.
pub const PROBE_SCRIPT: &str = "echo pid=$$ uid=$(id -u); \
     for n in pid net mnt ipc uts; do echo $n=$(readlink /proc/self/ns/$n); done";

/// The namespaces every sandbox here must have its own of.
pub const NAMESPACES: &[&str] = &["pid", "net", "mnt", "ipc", "uts"];

/// What one probe printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub pid: u32,
    pub uid: u32,
    /// Namespace kind → nsfs inode.
    pub ns: BTreeMap<String, u64>,
}

/// What a sandbox promises beyond its own namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The command is PID 1 of its namespace.
    pub pid_one: bool,
    /// The command does not run as uid 0 (in its user namespace, if any).
    pub non_root: bool,
}

pub fn parse(output: &str) -> Result<Probe, String> {
    let mut pid = None;
    let mut uid = None;
    let mut ns = BTreeMap::new();
    for word in output.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        match key {
            "pid" if value.parse::<u32>().is_ok() => pid = value.parse().ok(),
            "uid" => uid = value.parse().ok(),
            k if NAMESPACES.contains(&k) => {
                let inode = ns_inode(value).ok_or_else(|| format!("bad namespace link {word}"))?;
                ns.insert(k.to_owned(), inode);
            }
            _ => {}
        }
    }
    let pid = pid.ok_or("no pid in the probe's output")?;
    let uid = uid.ok_or("no uid in the probe's output")?;
    Ok(Probe { pid, uid, ns })
}

/// `net:[4026532183]` → 4026532183.
fn ns_inode(link: &str) -> Option<u64> {
    link.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

/// The benchmark's own namespaces (the host's, as it runs in them).
pub fn own_namespaces() -> BTreeMap<String, u64> {
    NAMESPACES
        .iter()
        .filter_map(|n| {
            let link = std::fs::read_link(format!("/proc/self/ns/{n}")).ok()?;
            Some(((*n).to_owned(), ns_inode(&link.to_string_lossy())?))
        })
        .collect()
}

/// Why the probe shows a sandbox that is not isolated, if it does.
pub fn check(probe: &Probe, host: &BTreeMap<String, u64>, expect: Expect) -> Result<(), String> {
    for n in NAMESPACES {
        match (probe.ns.get(*n), host.get(*n)) {
            (None, _) => return Err(format!("the probe could not read its {n} namespace")),
            (Some(inner), Some(outer)) if inner == outer => {
                return Err(format!("shares the host's {n} namespace ({inner})"));
            }
            _ => {}
        }
    }
    if expect.pid_one && probe.pid != 1 {
        return Err(format!("the command is pid {}, not PID 1", probe.pid));
    }
    if expect.non_root && probe.uid == 0 {
        return Err("the command runs as root".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "pid=1 uid=65534\npid=pid:[4026532190]\nnet=net:[4026532193]\n\
                       mnt=mnt:[4026532188]\nipc=ipc:[4026532189]\nuts=uts:[4026532187]\n";

    fn host() -> BTreeMap<String, u64> {
        NAMESPACES
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).to_owned(), 4026531830 + i as u64))
            .collect()
    }

    #[test]
    fn parses_the_probe_output() {
        let p = parse(OUT).unwrap();
        assert_eq!((p.pid, p.uid), (1, 65534));
        assert_eq!(p.ns["net"], 4026532193);
        assert_eq!(p.ns.len(), 5);
    }

    #[test]
    fn an_isolated_job_passes() {
        let p = parse(OUT).unwrap();
        let strict = Expect {
            pid_one: true,
            non_root: true,
        };
        assert_eq!(check(&p, &host(), strict), Ok(()));
    }

    #[test]
    fn shared_namespaces_root_and_wrong_pid_fail() {
        let mut p = parse(OUT).unwrap();
        let h = host();
        let strict = Expect {
            pid_one: true,
            non_root: true,
        };
        p.ns.insert("net".into(), h["net"]);
        assert!(check(&p, &h, strict).unwrap_err().contains("net"));
        let mut p = parse(OUT).unwrap();
        p.uid = 0;
        assert!(check(&p, &h, strict).unwrap_err().contains("root"));
        let mut p = parse(OUT).unwrap();
        p.pid = 7;
        assert!(check(&p, &h, strict).unwrap_err().contains("PID 1"));
        let mut p = parse(OUT).unwrap();
        p.ns.remove("uts");
        assert!(check(&p, &h, strict).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse("hello").is_err());
        assert!(parse("pid=1 uid=0 net=net:[x]").is_err());
    }

    #[test]
    fn own_namespaces_are_readable() {
        assert_eq!(own_namespaces().len(), NAMESPACES.len());
    }
}
