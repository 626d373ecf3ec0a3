//! One read of the whole process table, for questions about thousands of processes at once
//! (the harness's helpers rescan /proc on every call, fine for a few, not for 1,000 sandboxes).

use std::collections::HashMap;

use joblet_tests::host::Proc;

#[derive(Debug, Default)]
pub struct ProcTable {
    children: HashMap<i32, Vec<Proc>>,
}

pub fn snapshot() -> ProcTable {
    let mut children: HashMap<i32, Vec<Proc>> = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return ProcTable::default();
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((ppid, start)) = parse_stat(&stat) {
            children.entry(ppid).or_default().push(Proc { pid, start });
        }
    }
    ProcTable { children }
}

/// `(ppid, start time)` from a `/proc/PID/stat` line. The command name may hold spaces and
/// parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(i32, u64)> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

impl ProcTable {
    /// Every process below `pid` (not `pid` itself).
    pub fn descendants(&self, pid: i32) -> Vec<Proc> {
        let mut out = Vec::new();
        let mut queue = vec![pid];
        while let Some(p) = queue.pop() {
            for c in self.children.get(&p).into_iter().flatten() {
                out.push(*c);
                queue.push(c.pid);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_odd_command_name() {
        let line = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000";
        assert_eq!(parse_stat(line), Some((7, 12345)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_a_child_of_ours() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let table = snapshot();
        let found = table
            .descendants(std::process::id() as i32)
            .iter()
            .any(|p| p.pid == child.id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found);
    }
}
