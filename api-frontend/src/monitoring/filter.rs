//! Which sections a client asked for (`StreamMetricsRequest.metric_types`).

/// The sections of a metrics message that can be left out. Host and cloud are always sent:
/// they are what the numbers are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSet {
    pub cpu: bool,
    pub memory: bool,
    pub disk: bool,
    pub network: bool,
    pub io: bool,
    pub process: bool,
}

impl MetricSet {
    pub const ALL: MetricSet = MetricSet {
        cpu: true,
        memory: true,
        disk: true,
        network: true,
        io: true,
        process: true,
    };

    const NONE: MetricSet = MetricSet {
        cpu: false,
        memory: false,
        disk: false,
        network: false,
        io: false,
        process: false,
    };

    /// Parses Joblet's type names (`cpu memory disk network io process`, case-insensitive,
    /// plurals accepted). No names means everything; an unknown name is an error naming it.
    pub fn parse(types: &[String]) -> Result<MetricSet, String> {
        let mut set = MetricSet::NONE;
        let mut any = false;
        for raw in types {
            let name = raw.trim().to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            any = true;
            match name.as_str() {
                "cpu" => set.cpu = true,
                "memory" | "mem" => set.memory = true,
                "disk" | "disks" => set.disk = true,
                "network" | "networks" | "net" => set.network = true,
                "io" | "diskio" | "disk_io" => set.io = true,
                "process" | "processes" | "procs" => set.process = true,
                _ => {
                    let shown: String = raw.chars().take(40).collect();
                    return Err(format!(
                        "metric_types: unknown type {shown:?}; the types are cpu, memory, \
                         disk, network, io and process"
                    ));
                }
            }
        }
        Ok(if any { set } else { MetricSet::ALL })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<MetricSet, String> {
        MetricSet::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn names_and_defaults() {
        assert_eq!(parse(&[]).unwrap(), MetricSet::ALL);
        assert_eq!(parse(&["", " "]).unwrap(), MetricSet::ALL);
        let s = parse(&["CPU", "processes"]).unwrap();
        assert!(s.cpu && s.process);
        assert!(!s.memory && !s.disk && !s.network && !s.io);
        let all = parse(&["cpu", "memory", "disk", "network", "io", "process"]).unwrap();
        assert_eq!(all, MetricSet::ALL);
    }

    #[test]
    fn unknown_names_are_named() {
        let e = parse(&["cpu", "gpu"]).unwrap_err();
        assert!(e.contains("\"gpu\"") && e.contains("metric_types"), "{e}");
    }
}
