//! `--filter=cpu,memory,disk,network,io,process`: which sections `monitor top` and
//! `monitor watch` show (all when not given).

use crate::error::CliError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Cpu,
    Memory,
    Disk,
    Network,
    Io,
    Process,
}

impl Section {
    pub const ALL: [Section; 6] = [
        Section::Cpu,
        Section::Memory,
        Section::Disk,
        Section::Network,
        Section::Io,
        Section::Process,
    ];

    /// The name Joblet uses, also sent to the server as a metric type.
    pub fn name(self) -> &'static str {
        match self {
            Section::Cpu => "cpu",
            Section::Memory => "memory",
            Section::Disk => "disk",
            Section::Network => "network",
            Section::Io => "io",
            Section::Process => "process",
        }
    }

    fn parse(word: &str) -> Option<Section> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "cpu" => Section::Cpu,
            "memory" | "mem" => Section::Memory,
            "disk" | "disks" => Section::Disk,
            "network" | "net" | "networks" => Section::Network,
            "io" => Section::Io,
            "process" | "processes" | "proc" => Section::Process,
            _ => return None,
        })
    }
}

/// The chosen sections, in display order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sections(Vec<Section>);

impl Sections {
    pub fn all() -> Self {
        Sections(Section::ALL.to_vec())
    }

    /// From `--filter` values (each may hold a comma-separated list); empty means all.
    pub fn parse(values: &[String]) -> Result<Self, CliError> {
        let mut chosen = Vec::new();
        for word in values.iter().flat_map(|v| v.split(',')) {
            if word.trim().is_empty() {
                continue;
            }
            let section = Section::parse(word).ok_or_else(|| {
                CliError::invalid(
                    "--filter",
                    format!(
                        "'{}' is not a metric type; use any of cpu, memory, disk, network, io, \
                         process",
                        word.trim()
                    ),
                )
            })?;
            if !chosen.contains(&section) {
                chosen.push(section);
            }
        }
        if chosen.is_empty() {
            return Ok(Self::all());
        }
        chosen.sort();
        Ok(Sections(chosen))
    }

    pub fn has(&self, section: Section) -> bool {
        self.0.contains(&section)
    }

    pub fn is_all(&self) -> bool {
        self.0.len() == Section::ALL.len()
    }

    /// The metric types to ask the server for: none means all.
    pub fn metric_types(&self) -> Vec<String> {
        if self.is_all() {
            return Vec::new();
        }
        self.0.iter().map(|s| s.name().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lists_and_repeats_are_merged_in_display_order() {
        let s = Sections::parse(&words(&["process,CPU", "memory", "cpu"])).unwrap();
        assert_eq!(s.0, [Section::Cpu, Section::Memory, Section::Process]);
        assert_eq!(s.metric_types(), ["cpu", "memory", "process"]);
        assert!(s.has(Section::Memory) && !s.has(Section::Disk));
    }

    #[test]
    fn nothing_means_everything() {
        for empty in [words(&[]), words(&[""]), words(&[" , "])] {
            let s = Sections::parse(&empty).unwrap();
            assert!(s.is_all());
            assert!(s.metric_types().is_empty());
        }
    }

    #[test]
    fn unknown_types_name_the_flag_and_the_choices() {
        let err = Sections::parse(&words(&["cpu,gpu"])).unwrap_err();
        assert_eq!(err.exit(), crate::error::Exit::InvalidArgument);
        let text = err.to_string();
        assert!(
            text.starts_with("--filter: 'gpu' is not a metric type"),
            "{text}"
        );
        assert!(text.contains("network, io, process"), "{text}");
    }
}
