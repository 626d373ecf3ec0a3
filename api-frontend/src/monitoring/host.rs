//! The host: name, operating system, kernel, architecture, boot time, uptime, addresses.

use joblet_api_proto::HostInfo;

use super::network::Addresses;
use super::source::Source;
use super::time::rfc3339;

/// The operating system's name from os-release: `PRETTY_NAME`, else `NAME VERSION`.
pub fn parse_os_release(text: &str) -> Option<String> {
    let mut pretty = None;
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key {
            "PRETTY_NAME" => pretty = Some(value),
            "NAME" => name = Some(value),
            "VERSION" => version = Some(value),
            _ => {}
        }
    }
    pretty.filter(|p| !p.is_empty()).or(match (name, version) {
        (Some(n), Some(v)) => Some(format!("{n} {v}")),
        (n, _) => n,
    })
}

/// os-release values are shell strings: quoted, with backslash escapes inside quotes.
fn unquote(v: &str) -> String {
    let quoted = v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')));
    if !quoted {
        return v.to_owned();
    }
    let inner = &v[1..v.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && v.starts_with('"')
            && let Some(next) = chars.next()
        {
            out.push(next);
            continue;
        }
        out.push(c);
    }
    out
}

/// Seconds since boot, from `/proc/uptime`.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// Reads what describes the host. `boot_time` comes from `/proc/stat` when it was read.
pub fn read(source: &Source, node_id: &str, boot_time: Option<u64>, addrs: &Addresses) -> HostInfo {
    let first_line = |r: Result<String, _>| {
        r.ok()
            .map(|s: String| s.lines().next().unwrap_or("").trim().to_owned())
            .unwrap_or_default()
    };
    let os = source
        .etc_file("os-release")
        .or_else(|_| super::source::read_text(std::path::Path::new("/usr/lib/os-release")))
        .ok()
        .and_then(|t| parse_os_release(&t))
        .unwrap_or_else(|| "Linux".to_owned());
    let uptime = source
        .proc_file("uptime")
        .ok()
        .and_then(|t| parse_uptime(&t))
        .unwrap_or(0.0);
    let boot_time = boot_time.or_else(|| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        u64::try_from(now).ok()?.checked_sub(uptime as u64)
    });
    HostInfo {
        hostname: first_line(source.proc_file("sys/kernel/hostname")),
        os,
        kernel_version: first_line(source.proc_file("sys/kernel/osrelease")),
        architecture: std::env::consts::ARCH.to_owned(),
        boot_time: boot_time.map(rfc3339).unwrap_or_default(),
        uptime: uptime as i64,
        node_id: node_id.to_owned(),
        server_ips: addrs.server_ips(),
        mac_addresses: addrs.mac_addresses(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release() {
        assert_eq!(
            parse_os_release(include_str!("testdata/os-release")).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            parse_os_release("NAME=Fedora\nVERSION=\"40 (Server)\"\n").as_deref(),
            Some("Fedora 40 (Server)")
        );
        assert_eq!(
            parse_os_release("PRETTY_NAME=\"say \\\"hi\\\"\"\n").as_deref(),
            Some("say \"hi\"")
        );
        assert_eq!(
            parse_os_release("PRETTY_NAME='Alpine Linux v3.20'\n").as_deref(),
            Some("Alpine Linux v3.20")
        );
        assert_eq!(parse_os_release("garbage\n"), None);
    }

    #[test]
    fn uptime() {
        assert!(parse_uptime(include_str!("testdata/uptime")).unwrap() > 0.0);
        assert_eq!(parse_uptime("12.5 40.0\n"), Some(12.5));
        assert_eq!(parse_uptime("x"), None);
    }

    #[test]
    fn reads_a_captured_tree() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("sys/kernel")).unwrap();
        std::fs::write(proc.join("sys/kernel/hostname"), "box-1\n").unwrap();
        std::fs::write(proc.join("sys/kernel/osrelease"), "6.18.0-test\n").unwrap();
        std::fs::write(proc.join("uptime"), "100.7 3.0\n").unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("os-release"), "PRETTY_NAME=\"Test OS\"\n").unwrap();
        let source = Source {
            proc,
            sys: dir.path().join("sys"),
            etc,
        };
        let mut addrs = Addresses::default();
        addrs.add_ip("eth0", "198.51.100.4".parse().unwrap());
        let h = read(&source, "node-a", Some(0), &addrs);
        assert_eq!(h.hostname, "box-1");
        assert_eq!(h.kernel_version, "6.18.0-test");
        assert_eq!(h.os, "Test OS");
        assert_eq!(h.uptime, 100);
        assert_eq!(h.boot_time, "1970-01-01T00:00:00Z");
        assert_eq!(h.node_id, "node-a");
        assert_eq!(h.server_ips, vec!["198.51.100.4"]);
        assert!(!h.architecture.is_empty());
    }
}
