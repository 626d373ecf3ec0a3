//! systemd's readiness protocol: one datagram to `$NOTIFY_SOCKET` (a path, or an abstract
//! name written with a leading `@`). No crate needed for twenty lines.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Where to send notifications, taken once at start.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: OsString,
}

impl Notifier {
    /// `None` when not started by systemd (no `NOTIFY_SOCKET`).
    pub fn from_env() -> Option<Notifier> {
        let socket = std::env::var_os("NOTIFY_SOCKET")?;
        (!socket.is_empty()).then_some(Notifier { socket })
    }

    /// Sends `state` (`READY=1`, `STOPPING=1`, `STATUS=...`).
    pub fn notify(&self, state: &str) -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let name = self.socket.as_bytes();
        if let Some(abstract_name) = name.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), std::path::Path::new(&self.socket))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_socket() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: path.into_os_string(),
        };
        n.notify("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("joblet-test-notify-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_listener = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier {
            socket: format!("@{name}").into(),
        };
        n.notify("STOPPING=1").unwrap();
        let len = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }
}
