//! Taking ownership of file descriptors inherited from the supervisor (listening sockets,
//! the settings memfd), whose numbers arrive as arguments.

use std::collections::HashSet;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

static TAKEN: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

/// Takes an inherited fd: checks it is open and not one of 0-2, marks it close-on-exec so
/// it never leaks into a child, and refuses to hand out the same number twice.
pub fn take(fd: RawFd) -> std::io::Result<OwnedFd> {
    let invalid = |why: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("inherited fd {fd}: {why}"),
        )
    };
    if fd < 3 {
        return Err(invalid("0-2 are stdio, not inherited sockets"));
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if !taken.get_or_insert_with(HashSet::new).insert(fd) {
        return Err(invalid("already taken"));
    }
    // SAFETY: F_GETFD on an integer only reads flags; a closed fd yields EBADF, no memory is
    // touched.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(invalid("not open"));
    }
    // SAFETY: the fd is open (checked above), was given to this process by the supervisor
    // for exactly this use, and the TAKEN set guarantees it gets a single owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(owned)
}

/// [`take`] for a listening socket: an fd that is open but not listening (a supervisor
/// handing over the wrong number) is refused here, rather than failing every `accept` later
/// in a daemon's event loop.
pub fn take_listener(fd: RawFd) -> std::io::Result<OwnedFd> {
    let owned = take(fd)?;
    match nix::sys::socket::getsockopt(&owned, nix::sys::socket::sockopt::AcceptConn) {
        Ok(true) => Ok(owned),
        Ok(false) => Err(not_listening(fd, "a socket that is not listening")),
        Err(nix::errno::Errno::ENOTSOCK) => Err(not_listening(fd, "not a socket")),
        Err(e) => Err(e.into()),
    }
}

fn not_listening(fd: RawFd, what: &str) -> std::io::Error {
    let why = format!("inherited fd {fd} should be a listening socket but is {what}");
    std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn takes_once_and_refuses_closed_or_stdio() {
        let f = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        let owned = take(f).unwrap();
        assert!(take(f).is_err());
        drop(owned);
        assert!(take(1).is_err());
        assert!(take(100_000).is_err());
    }

    /// Moves `fd` to a number of its own above 600: taken numbers stay taken for the whole
    /// process, and the other test reuses the low ones.
    fn high(fd: impl std::os::fd::AsFd, n: RawFd) -> RawFd {
        fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(600 + n))
            .unwrap()
            .into_raw_fd()
    }

    #[test]
    fn a_listener_must_be_a_listening_socket() {
        let file = high(std::fs::File::open("/dev/null").unwrap(), 0);
        let err = take_listener(file).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let err = take_listener(high(a, 10)).unwrap_err().to_string();
        assert!(err.contains("not listening"), "{err}");
        let path = std::env::temp_dir().join(format!("inherit-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(take_listener(high(listener, 20)).is_ok());
        std::fs::remove_file(&path).unwrap();
    }
}
