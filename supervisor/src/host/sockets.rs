//! The listening sockets the helpers inherit: one `SOCK_SEQPACKET` socket per IPC channel in
//! the run directory (`root:<group>` 0660), and the frontend's TCP socket. They belong to the
//! supervisor, so a helper that restarts finds its socket still there with clients queued.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use joblet_ipc_proto::Channel;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Uid, chown};

/// Pending connections each IPC socket queues while its helper restarts.
const IPC_BACKLOG: i32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{path}: {step} failed: {source}")]
    Unix {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("{path} is being served: is another joblet running with this run directory?")]
    InUse { path: PathBuf },
    #[error("{key} {address:?} port {port}: {message}")]
    Tcp {
        /// The config key that names the address.
        key: &'static str,
        address: String,
        port: u16,
        message: String,
    },
}

/// A bound, listening IPC socket and its path.
#[derive(Debug)]
pub struct IpcSocket {
    pub channel: Channel,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// Creates the listening socket for `channel` in `run_dir`, replacing a stale socket file.
pub fn bind_ipc(run_dir: &Path, channel: Channel, gid: u32) -> Result<IpcSocket, SocketError> {
    let path = run_dir.join(channel.socket_name());
    let fail = |step: &'static str| {
        let path = path.clone();
        move |e: nix::Error| SocketError::Unix {
            path,
            step,
            source: e.into(),
        }
    };
    if is_served(&path) {
        return Err(SocketError::InUse { path });
    }
    remove_stale(&path)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(fail("socket"))?;
    let addr = UnixAddr::new(&path).map_err(fail("address"))?;
    // Born 0600 root:root; opened up to the group only after the chown, so there is no moment
    // when the socket is reachable with a wider mode. We are single-threaded: the umask change
    // affects no one else.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = bind(fd.as_raw_fd(), &addr);
    umask(old);
    bound.map_err(fail("bind"))?;
    chown(&path, Some(Uid::from_raw(0)), Some(Gid::from_raw(gid))).map_err(fail("chown"))?;
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &path,
        Mode::from_bits_truncate(0o660),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(fail("chmod"))?;
    listen(&fd, Backlog::new(IPC_BACKLOG).map_err(fail("listen"))?).map_err(fail("listen"))?;
    Ok(IpcSocket { channel, path, fd })
}

/// True when something listens at `path` (a connect succeeds), i.e. it is not stale.
fn is_served(path: &Path) -> bool {
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    UnixAddr::new(path)
        .and_then(|addr| nix::sys::socket::connect(fd.as_raw_fd(), &addr))
        .is_ok()
}

/// Unlinks a socket left by an earlier run; anything else at that path is an error.
fn remove_stale(path: &Path) -> Result<(), SocketError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|source| SocketError::Unix {
                path: path.to_owned(),
                step: "removing the stale socket",
                source,
            })
        }
        Ok(_) => Err(SocketError::NotASocket {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SocketError::Unix {
            path: path.to_owned(),
            step: "stat",
            source,
        }),
    }
}

/// Removes the socket files at shutdown (only if they are still sockets).
pub fn remove_sockets(sockets: &[IpcSocket]) {
    for s in sockets {
        if let Err(e) = remove_stale(&s.path) {
            tracing::warn!(path = %s.path.display(), error = %e, "could not remove socket");
        }
    }
}

/// Binds one of the frontend's TCP sockets (`SO_REUSEADDR`, listening), configured at `key`.
/// Port 0 picks a free port.
pub fn bind_tcp(
    key: &'static str,
    address: &str,
    port: u16,
) -> Result<(OwnedFd, SocketAddr), SocketError> {
    let fail = |message: String| SocketError::Tcp {
        key,
        address: address.to_owned(),
        port,
        message,
    };
    // Brackets are how an IPv6 literal is written next to a port; the resolver wants it bare.
    let host = address.trim_start_matches('[').trim_end_matches(']');
    let candidates: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| fail(format!("cannot resolve: {e}")))?
        .collect();
    let mut last = None;
    for addr in candidates {
        // std sets SO_REUSEADDR and close-on-exec on Unix.
        match TcpListener::bind(addr) {
            Ok(l) => {
                let local = l.local_addr().map_err(|e| fail(e.to_string()))?;
                return Ok((OwnedFd::from(l), local));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(fail(match last {
        Some(e) => format!("cannot bind: {e}"),
        None => "resolves to no address".into(),
    }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn ipc_socket_is_group_only_and_replaces_a_stale_one() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let s = bind_ipc(t.path(), Channel::State, 64700).unwrap();
        let meta = std::fs::symlink_metadata(&s.path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (0, 64700, 0o660)
        );
        assert_eq!(s.path.file_name().unwrap(), "stated.sock");
        let peer = nix::sys::socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        nix::sys::socket::connect(peer.as_raw_fd(), &UnixAddr::new(&s.path).unwrap()).unwrap();
        // While served, the socket is not taken over; once its listener is gone it is stale
        // and replaced.
        let err = bind_ipc(t.path(), Channel::State, 64700).unwrap_err();
        assert!(matches!(err, SocketError::InUse { .. }), "{err}");
        drop(s.fd);
        let again = bind_ipc(t.path(), Channel::State, 64700).unwrap();
        assert!(is_served(&again.path));
        remove_sockets(&[again]);
        assert!(!s.path.exists());
        // Not a socket: refused and left alone.
        std::fs::write(&s.path, b"data").unwrap();
        let err = bind_ipc(t.path(), Channel::State, 64700).unwrap_err();
        assert!(matches!(err, SocketError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read(&s.path).unwrap(), b"data");
    }

    #[test]
    fn tcp_binds_any_free_port_and_names_bad_addresses() {
        let (fd, addr) = bind_tcp("server.address", "127.0.0.1", 0).unwrap();
        assert_ne!(addr.port(), 0);
        std::net::TcpStream::connect(addr).unwrap();
        // The port is taken: the error names the key and the address.
        let err = bind_tcp("monitoring.bind_address", "127.0.0.1", addr.port())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("monitoring.bind_address \"127.0.0.1\"") && err.contains("bind"),
            "{err}"
        );
        drop(fd);
        let err = bind_tcp("server.address", "no-such-host.invalid", 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.address \"no-such-host.invalid\""),
            "{err}"
        );
        let (_fd6, addr6) = match bind_tcp("server.address", "[::1]", 0) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("skipped IPv6: {e}");
                return;
            }
        };
        assert!(addr6.is_ipv6());
    }
}
