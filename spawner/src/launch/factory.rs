//! The shim factory: a small process the spawner forks once, at its start, to fork every job's
//! shim. A shim forked from the spawner itself kept, alone, each page of the spawner's heap that
//! the spawner wrote after the fork, and that heap grows with the jobs the spawner holds: a
//! shim cost 100 KB when the spawner held no job and up to 1 MB when it held a thousand. The
//! factory's memory stays that of a spawner that has just started, so its shims share it.
//!
//! The factory forks with `CLONE_PARENT` ([`super::fork_shim`]): each shim is the spawner's own
//! child, exactly as if the spawner had forked it (it gets its exit signal, reaps it, holds its
//! pidfd). The factory reads nothing but its socket pair with the spawner, one order at a time,
//! and exits when the spawner's end closes. Between orders it waits in the network namespace
//! the next job gets ([`super::netns`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use joblet_ipc_proto::{IpcError, blocking::SeqSocket, codec::Message};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socketpair, sockopt};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};

use super::seccomp::JobFilter;
use super::shim::exit;
use super::{At, LaunchPlan, Placement, ShimEnds, StepError, StepResult, netns};
use crate::record::ProcRef;
use crate::sys::{self, Cloned};

/// How long the spawner waits for a shim to be forked before it takes the factory for hung.
const ORDER_PATIENCE: Duration = Duration::from_secs(10);

/// The spawner's order: a shim for this plan. Its fds: the job's cgroup directory when the
/// init is cloned into it (`join` is `None`), then the staged uploads when `upload`.
#[derive(Serialize, Deserialize)]
struct Order {
    plan: LaunchPlan,
    /// cgroup v1: the job's directory in every hierarchy, for the init to join.
    join: Option<Vec<PathBuf>>,
    upload: bool,
}

impl Message for Order {
    fn expected_fds(&self) -> usize {
        usize::from(self.join.is_none()) + usize::from(self.upload)
    }
    fn name(&self) -> &'static str {
        "Order"
    }
}

/// The factory's answer. With `Shim`, the fds [`super::fork_shim`] returns, in its order.
#[derive(Serialize, Deserialize)]
enum Made {
    Shim { pid: i32 },
    Failed(StepError),
}

impl Message for Made {
    fn expected_fds(&self) -> usize {
        match self {
            Made::Shim { .. } => 5,
            Made::Failed(_) => 0,
        }
    }
    fn name(&self) -> &'static str {
        "Made"
    }
}

/// The spawner's handle on its factory.
pub struct Factory {
    sock: SeqSocket,
    pidfd: OwnedFd,
    /// The job seccomp filter, compiled once; every factory forked holds a copy.
    pub filter: JobFilter,
    buf: Vec<u8>,
}

impl Factory {
    /// Forks the factory. The shims inherit its signal mask and credentials, so the spawner
    /// calls this once those are what jobs must start from.
    pub fn start(filter: JobFilter) -> StepResult<Factory> {
        let kind = (AddressFamily::Unix, SockType::SeqPacket);
        let pair = socketpair(kind.0, kind.1, None, SockFlag::SOCK_CLOEXEC);
        let (ours, theirs) = pair.at(|| "create the shim factory's socket pair")?;
        let patience = TimeVal::new(ORDER_PATIENCE.as_secs() as _, 0);
        setsockopt(&ours, sockopt::ReceiveTimeout, &patience).at(|| "set the factory's timeout")?;
        // SAFETY: the spawner is single-threaded (a poll loop, no runtime, no helper threads),
        // so the child may allocate and run ordinary code; it never returns from `serve`.
        match unsafe { sys::clone3(0, None) }.at(|| "fork the shim factory")? {
            Cloned::Child => {
                drop(ours);
                serve(SeqSocket::from_fd(theirs), &filter)
            }
            Cloned::Parent { pidfd, .. } => Ok(Factory {
                sock: SeqSocket::from_fd(ours),
                pidfd,
                filter,
                buf: Vec::new(),
            }),
        }
    }

    /// Has the factory fork a shim for `plan` ([`super::fork_shim`]) while the spawner goes
    /// on; [`Factory::made`] must follow an order that succeeded. A factory found gone is
    /// replaced before the order; one that fails to answer is replaced after, and this launch
    /// fails (a shim it may have forked exits when its release pipe closes, and stays a zombie
    /// of ours: the factory is expected to die only by an administrator's SIGKILL).
    pub fn order(
        &mut self,
        plan: LaunchPlan,
        placement: Placement<'_>,
        upload: Option<BorrowedFd<'_>>,
    ) -> StepResult<()> {
        let (join, cgroup) = match placement {
            Placement::Join(dirs) => (Some(dirs), None),
            Placement::CloneInto(fd) => (None, Some(fd)),
        };
        let order = Order {
            plan,
            join,
            upload: upload.is_some(),
        };
        let fds: Vec<BorrowedFd<'_>> = cgroup.into_iter().chain(upload).collect();
        let mut sent = self.sock.send(&order, &fds);
        if let Err(IpcError::Io(_)) = sent {
            // The factory was gone before this order, so nothing was forked: a new one takes it.
            self.restart();
            sent = self.sock.send(&order, &fds);
        }
        match sent {
            Ok(()) => Ok(()),
            Err(IpcError::Oversized { len, max }) => Err(StepError::msg(format!(
                "the launch plan takes {len} bytes, over the {max} an order holds"
            ))),
            Err(e) => Err(self.replaced(e)),
        }
    }

    /// The factory's answer to the last [`Factory::order`]: the shim and its fds.
    pub fn made(&mut self) -> StepResult<(ProcRef, ShimEnds)> {
        match self.sock.recv::<Made>(&mut self.buf) {
            Ok((Made::Shim { pid }, fds)) => name_shim(pid, fds),
            Ok((Made::Failed(e), _)) => Err(e),
            Err(e) => Err(self.replaced(e)),
        }
    }

    fn replaced(&mut self, e: IpcError) -> StepError {
        self.restart();
        StepError::new("the shim factory failed (it was replaced)", e)
    }

    /// Replaces a factory that failed or hung: it is killed and reaped, and a new one forked
    /// (if that fails too, the next launch tries again).
    fn restart(&mut self) {
        tracing::error!("the shim factory failed: forking a new one");
        sys::kill_and_reap(self.pidfd.as_fd());
        match Factory::start(self.filter.clone()) {
            Ok(new) => *self = new,
            Err(e) => tracing::error!(error = %e, "cannot fork a new shim factory"),
        }
    }

    /// Ends the factory at the spawner's shutdown, so that nothing of ours outlives it.
    pub fn stop(&self) {
        sys::kill_and_reap(self.pidfd.as_fd());
    }
}

/// The shim, named by its pid and start time, and its fds ([`ShimEnds`]).
fn name_shim(pid: i32, fds: Vec<OwnedFd>) -> StepResult<(ProcRef, ShimEnds)> {
    let Ok(fds) = ShimEnds::try_from(fds) else {
        return Err(StepError::msg("the shim factory sent the wrong fds"));
    };
    // The shim is our child and waits for `go`: it cannot have been reaped, so this start time
    // is its own.
    match sys::proc_start_ticks(pid) {
        Ok(start_ticks) => Ok((ProcRef { pid, start_ticks }, fds)),
        Err(e) => {
            // Closing the go pipe makes the waiting shim exit at once; reap it.
            let [pidfd, .., go] = fds;
            drop(go);
            let _ = sys::reap_pidfd(pidfd.as_fd(), true);
            Err(StepError::new("name the shim", e))
        }
    }
}

/// The factory's body: one order at a time, until the spawner's end closes.
fn serve(sock: SeqSocket, filter: &JobFilter) -> ! {
    let _ = nix::sys::prctl::set_name(c"joblet-factory");
    // The spawner's listener, clients and jobs' fds are not ours to hold.
    if sys::close_all_except(&[0, 1, 2, sock.as_raw_fd()]).is_err() {
        exit(1)
    }
    // Every shim is forked in the namespace made before its order, and a new one is made
    // after: no two jobs share one.
    enter_fresh_netns();
    let mut buf = Vec::new();
    loop {
        // Any failure to read, the spawner's close included, ends the factory: the spawner
        // replaces a factory that does not answer.
        let Ok((order, fds)) = sock.recv::<Order>(&mut buf) else {
            exit(0)
        };
        let sent = match make(order, fds, filter) {
            Ok((pid, fds)) => sock.send(&Made::Shim { pid }, &fds.each_ref().map(AsFd::as_fd)),
            Err(e) => sock.send(&Made::Failed(e), &[]),
        };
        if sent.is_err() {
            exit(1)
        }
        enter_fresh_netns();
    }
}

/// A factory that cannot make the next job's network namespace must not fork in the last
/// job's: it exits, and the spawner replaces it (and fails the launch if the new one cannot
/// make one either).
fn enter_fresh_netns() {
    if let Err(e) = netns::enter_fresh() {
        tracing::error!(error = %e, "the shim factory cannot make a network namespace; exiting");
        exit(1)
    }
}

fn make(order: Order, mut fds: Vec<OwnedFd>, filter: &JobFilter) -> StepResult<(i32, ShimEnds)> {
    let upload = if order.upload { fds.pop() } else { None };
    let placement = match (order.join, fds.first()) {
        (Some(dirs), _) => Placement::Join(dirs),
        (None, Some(cgroup)) => Placement::CloneInto(cgroup.as_fd()),
        (None, None) => return Err(StepError::msg("the order lacks the cgroup fd")),
    };
    let upload = upload.as_ref().map(|u| u.as_fd());
    super::fork_shim(&order.plan, filter, placement, upload)
}
