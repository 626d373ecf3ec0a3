//! Finding our children through `/proc`, for the final sweep: orphans re-parented to us (we
//! are a child subreaper) that no helper accounts for.

/// Pids whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parent_pid(&stat))
                == Some(parent)
        })
        .collect()
}

/// The ppid field of a `/proc/PID/stat` line. The command name, in parentheses, may itself
/// contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parent_pid(stat: &str) -> Option<u32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ppid_even_with_odd_command_names() {
        assert_eq!(parent_pid("42 (sleep) S 7 42 42 0"), Some(7));
        assert_eq!(parent_pid("42 (a) b) (c) S 9 1"), Some(9));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn finds_a_real_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kids = children_of(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(kids.contains(&child.id()), "{kids:?}");
    }
}
