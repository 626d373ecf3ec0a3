//! The job's seccomp filter, kept as data: [`RULES`] lists every refused call, each with what
//! it blocks and why (as Firecracker keeps its filters). It is compiled to classic BPF with
//! seccompiler by [`job_filter`] in the spawner, before the fork, and installed by the job init
//! with [`install`] as the very last step before `execve` (after no_new_privs; the init is
//! single-threaded, so no thread is left unfiltered).
//!
//! It is a deny-list: jobs run arbitrary programs (compilers, interpreters, shells), so we refuse
//! what reaches kernel-wide state or escape-prone kernel code and allow the rest. Refused calls
//! fail with `EPERM`, except `clone3`, which fails with `ENOSYS` so that glibc and Rust's std fall
//! back to `clone(2)`, whose flags a filter can read.
//!
//! Beyond the table, the program checks the architecture: a call made through the i386 entry
//! (`int 0x80`, audit arch ≠ x86_64) or with an x32 syscall number (≥ 0x40000000) kills the
//! process, so the table cannot be side-stepped by another syscall numbering. (The one call
//! refused with `ENOSYS` is matched by number just before the i386 check, so an i386 call of
//! that number is refused rather than killed.)
//!
//! Arguments are compared on their low 32 bits: every argument we test is an `int`/`unsigned
//! int` for the kernel, or a flags word that the kernel truncates to 32 bits (`clone`) or whose
//! tested bits all lie in the low half (`unshare`), so high bits cannot hide a match.
//!
//! Cost: the kernel recognises syscalls that this filter allows whatever their arguments and
//! caches that verdict, so ordinary calls do not run the filter at all.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the job seccomp filter is written for x86_64 syscall numbers only");

/// The errno a refused call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    Eperm,
    /// "This kernel has no such call": callers fall back to an older call we can check.
    Enosys,
}

impl Deny {
    pub fn errno(self) -> i32 {
        match self {
            Deny::Eperm => libc::EPERM,
            Deny::Enosys => libc::ENOSYS,
        }
    }
}

/// Which calls of a syscall a rule refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Every call.
    Always,
    /// Calls whose argument `arg` has the bit(s) `flag` set, whatever the other bits.
    FlagSet { arg: u8, flag: u64 },
    /// Calls whose arguments equal every `(arg, value)` pair.
    ArgsEq(&'static [(u8, u64)]),
    /// Calls whose argument `arg` is none of `allowed`.
    ArgNotIn { arg: u8, allowed: &'static [u64] },
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Unique label: the syscall's name, plus the argument case for conditional rules.
    pub name: &'static str,
    pub nr: i64,
    pub when: When,
    pub deny: Deny,
    /// What the rule blocks and why a job must not do it.
    pub why: &'static str,
}

const fn always(name: &'static str, nr: i64, why: &'static str) -> Rule {
    only(name, nr, When::Always, why)
}

const fn only(name: &'static str, nr: i64, when: When, why: &'static str) -> Rule {
    Rule {
        name,
        nr,
        when,
        deny: Deny::Eperm,
        why,
    }
}

const fn flag(arg: u8, flag: libc::c_int) -> When {
    When::FlagSet {
        arg,
        flag: flag as u64,
    }
}

/// `NETLINK_AUDIT` from `<linux/netlink.h>`.
const NETLINK_AUDIT: u64 = 9;
/// `personality(2)`: `PER_LINUX` (the default) and `0xffffffff` (query, changes nothing).
const PERSONALITY_ALLOWED: &[u64] = &[0, 0xffff_ffff];

const NS_WHY: &str = "namespaces are the spawner's job; a new one inside the job reopens kernel \
                      surface the job's own namespaces closed";

use libc::{
    CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWTIME,
    CLONE_NEWUSER, CLONE_NEWUTS,
};

/// Every call the job may not make. Each row is exercised by a test (`tests/seccomp.rs`).
// `libc::Ioctl` is `c_ulong` on glibc but `c_int` on musl: the casts are needed on one of them.
#[allow(clippy::unnecessary_cast)]
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    // ── Code into the kernel ────────────────────────────────────────────────────────────────
    always("init_module", libc::SYS_init_module, "loads a kernel module from memory: arbitrary code in the host kernel"),
    always("finit_module", libc::SYS_finit_module, "loads a kernel module from a file: arbitrary code in the host kernel"),
    always("delete_module", libc::SYS_delete_module, "unloads a host kernel module (a driver, a security module)"),
    always("kexec_load", libc::SYS_kexec_load, "replaces the running host kernel"),
    always("kexec_file_load", libc::SYS_kexec_file_load, "replaces the running host kernel from a file"),

    // ── Kernel attack surface with a record of privilege escalations ─────────────────────────
    always("bpf", libc::SYS_bpf, "eBPF programs and maps: verifier bugs, kernel memory reads; the device filter of this job is itself BPF"),
    always("perf_event_open", libc::SYS_perf_event_open, "kernel profiling: leaks kernel addresses, long history of escalation bugs"),
    always("userfaultfd", libc::SYS_userfaultfd, "stalls kernel page-fault handling at will: the usual tool to win kernel races"),
    always("io_uring_setup", libc::SYS_io_uring_setup, "io_uring runs operations this filter never sees, and is a frequent exploit source"),
    always("io_uring_enter", libc::SYS_io_uring_enter, "io_uring: submits operations this filter never sees"),
    always("io_uring_register", libc::SYS_io_uring_register, "io_uring: registers files and buffers for unfiltered operations"),
    always("keyctl", libc::SYS_keyctl, "kernel keyrings are shared per uid, not per job: could read or plant other processes' keys"),
    always("add_key", libc::SYS_add_key, "adds a key to a kernel keyring shared beyond the job"),
    always("request_key", libc::SYS_request_key, "asks the kernel (and host upcall helpers) for a key"),

    // ── Other processes ─────────────────────────────────────────────────────────────────────
    always("ptrace", libc::SYS_ptrace, "controls another process: its memory, registers and syscalls"),
    always("process_vm_readv", libc::SYS_process_vm_readv, "reads another process's memory without ptrace"),
    always("process_vm_writev", libc::SYS_process_vm_writev, "writes another process's memory without ptrace"),
    always("kcmp", libc::SYS_kcmp, "compares kernel objects of two processes: leaks kernel pointer order and others' fds"),
    always("pidfd_getfd", libc::SYS_pidfd_getfd, "copies a file descriptor out of another process"),

    // ── Mounts and the root ─────────────────────────────────────────────────────────────────
    always("mount", libc::SYS_mount, "could cover the read-only root or expose host filesystems"),
    always("umount2", libc::SYS_umount2, "could uncover what the job's mounts hide (masked /proc paths)"),
    always("pivot_root", libc::SYS_pivot_root, "changes the root filesystem the spawner built"),
    always("chroot", libc::SYS_chroot, "with a directory fd kept outside, the classic chroot escape"),
    always("open_tree", libc::SYS_open_tree, "new mount API: clones mounts, the powers of mount(2)"),
    always("move_mount", libc::SYS_move_mount, "new mount API: attaches mounts, the powers of mount(2)"),
    always("fsopen", libc::SYS_fsopen, "new mount API: creates a filesystem context (superblock parsers are exposed)"),
    always("fsconfig", libc::SYS_fsconfig, "new mount API: configures a filesystem context"),
    always("fsmount", libc::SYS_fsmount, "new mount API: turns a filesystem context into a mount"),
    always("fspick", libc::SYS_fspick, "new mount API: reconfigures an existing superblock"),
    always("mount_setattr", libc::SYS_mount_setattr, "new mount API: could make a read-only mount writable"),
    always("name_to_handle_at", libc::SYS_name_to_handle_at, "file handles address files without paths: half of the 'shocker' escape"),
    always("open_by_handle_at", libc::SYS_open_by_handle_at, "opens a file by handle, bypassing the job's root (the 'shocker' escape)"),
    always("quotactl", libc::SYS_quotactl, "filesystem quota administration: could lift the job's own disk limit"),
    always("quotactl_fd", libc::SYS_quotactl_fd, "filesystem quota administration through an fd"),

    // ── Namespaces ──────────────────────────────────────────────────────────────────────────
    always("setns", libc::SYS_setns, "joins another namespace through a leaked /proc/PID/ns fd"),
    only("unshare CLONE_NEWUSER", libc::SYS_unshare, flag(0, CLONE_NEWUSER), "a user namespace where the job is root: the entry point of most unprivileged kernel exploits"),
    only("unshare CLONE_NEWNS", libc::SYS_unshare, flag(0, CLONE_NEWNS), NS_WHY),
    only("unshare CLONE_NEWNET", libc::SYS_unshare, flag(0, CLONE_NEWNET), NS_WHY),
    only("unshare CLONE_NEWPID", libc::SYS_unshare, flag(0, CLONE_NEWPID), NS_WHY),
    only("unshare CLONE_NEWIPC", libc::SYS_unshare, flag(0, CLONE_NEWIPC), NS_WHY),
    only("unshare CLONE_NEWUTS", libc::SYS_unshare, flag(0, CLONE_NEWUTS), NS_WHY),
    only("unshare CLONE_NEWCGROUP", libc::SYS_unshare, flag(0, CLONE_NEWCGROUP), NS_WHY),
    only("unshare CLONE_NEWTIME", libc::SYS_unshare, flag(0, CLONE_NEWTIME), NS_WHY),
    // clone(2) cannot take CLONE_NEWTIME: that bit belongs to the exit signal there.
    only("clone CLONE_NEWUSER", libc::SYS_clone, flag(0, CLONE_NEWUSER), "a user namespace where the job is root: the entry point of most unprivileged kernel exploits"),
    only("clone CLONE_NEWNS", libc::SYS_clone, flag(0, CLONE_NEWNS), NS_WHY),
    only("clone CLONE_NEWNET", libc::SYS_clone, flag(0, CLONE_NEWNET), NS_WHY),
    only("clone CLONE_NEWPID", libc::SYS_clone, flag(0, CLONE_NEWPID), NS_WHY),
    only("clone CLONE_NEWIPC", libc::SYS_clone, flag(0, CLONE_NEWIPC), NS_WHY),
    only("clone CLONE_NEWUTS", libc::SYS_clone, flag(0, CLONE_NEWUTS), NS_WHY),
    only("clone CLONE_NEWCGROUP", libc::SYS_clone, flag(0, CLONE_NEWCGROUP), NS_WHY),
    Rule { deny: Deny::Enosys, ..always("clone3", libc::SYS_clone3,
        "its flags sit behind a pointer a filter cannot read; ENOSYS makes callers fall back to clone(2), checked above") },

    // ── Host-wide state ─────────────────────────────────────────────────────────────────────
    always("swapon", libc::SYS_swapon, "changes the host's swap"),
    always("swapoff", libc::SYS_swapoff, "changes the host's swap"),
    always("reboot", libc::SYS_reboot, "reboots or halts the host"),
    always("syslog", libc::SYS_syslog, "reads or clears the kernel log: kernel addresses, other tenants' messages"),
    always("acct", libc::SYS_acct, "switches host-wide process accounting on or off"),
    always("settimeofday", libc::SYS_settimeofday, "the clock is not namespaced: would set the host's time"),
    always("clock_settime", libc::SYS_clock_settime, "the clock is not namespaced: would set the host's time"),
    always("clock_adjtime", libc::SYS_clock_adjtime, "adjusts the host clock (also refused read-only: the mode sits in a struct a filter cannot read)"),
    always("adjtimex", libc::SYS_adjtimex, "adjusts the host clock (also refused read-only: the mode sits in a struct a filter cannot read)"),
    always("iopl", libc::SYS_iopl, "raw I/O port access: talks to hardware directly"),
    always("ioperm", libc::SYS_ioperm, "raw I/O port access: talks to hardware directly"),
    always("lookup_dcookie", libc::SYS_lookup_dcookie, "profiling helper resolving kernel cookies to paths (gone since Linux 6.10)"),
    always("vhangup", libc::SYS_vhangup, "hangs up the terminal, cutting off other sessions on it"),
    always("fanotify_init", libc::SYS_fanotify_init, "filesystem-wide file event monitoring, and blocking others' file access"),

    // ── Dangerous modes of ordinary calls ───────────────────────────────────────────────────
    only("personality", libc::SYS_personality, When::ArgNotIn { arg: 0, allowed: PERSONALITY_ALLOWED },
         "flags like READ_IMPLIES_EXEC or ADDR_NO_RANDOMIZE weaken memory protections; only the default and the query are needed"),
    only("ioctl TIOCSTI", libc::SYS_ioctl, When::ArgsEq(&[(1, libc::TIOCSTI as u64)]),
         "pushes characters into a terminal's input: a job sharing a terminal could type into the shell that started it"),
    only("ioctl TIOCLINUX", libc::SYS_ioctl, When::ArgsEq(&[(1, libc::TIOCLINUX as u64)]),
         "virtual console control, including pasting into a console's input (the TIOCSTI attack)"),
    only("socket AF_NETLINK NETLINK_AUDIT", libc::SYS_socket, When::ArgsEq(&[(0, libc::AF_NETLINK as u64), (2, NETLINK_AUDIT)]),
         "the audit log is host-wide: a job must neither forge records auditors trust nor read the host's"),
    // Decision: AF_VSOCK is refused outright. vsock addresses are not scoped by the job's
    // network namespace: on a VM host a job could reach the hypervisor's agents (cid 2) or a
    // sibling guest, bypassing the job's network isolation. Jobs needing it do not exist here.
    only("socket AF_VSOCK", libc::SYS_socket, When::ArgsEq(&[(0, libc::AF_VSOCK as u64)]),
         "virtio sockets ignore network namespaces: a job could reach the hypervisor host or other VMs"),
];

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("compile the job's seccomp filter: {0}")]
    Compile(#[from] seccompiler::BackendError),
    #[error("set no_new_privs before the seccomp filter: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("install the job's seccomp filter: {0}")]
    Install(std::io::Error),
}

/// The compiled filter: one BPF program. The kernel converts, JIT-compiles and caches every
/// program a process installs, for every job, so the table's few calls refused with another
/// errno than `EPERM` (only ever refused whole) are answered by number right after the
/// [`x32_guard`] rather than by a second seccompiler filter (one filter has one match action).
#[derive(Debug, Clone)]
pub struct JobFilter {
    program: BpfProgram,
}

impl JobFilter {
    /// BPF instructions, for the log.
    pub fn instructions(&self) -> usize {
        self.program.len()
    }
}

/// Compiles [`RULES`]. Call it before forking: [`install`] then needs no allocation. (Its
/// size is in the spawner's "ready" log line.)
pub fn job_filter() -> Result<JobFilter, SeccompError> {
    compile(RULES)
}

/// Installs the program on the calling thread, which should be the job init's only thread.
/// Sets no_new_privs first (required by the kernel without CAP_SYS_ADMIN; the init has set it
/// already). Only syscalls, no allocation: safe right before `execve` in a forked child.
pub fn install(filter: &JobFilter) -> Result<(), SeccompError> {
    seccompiler::apply_filter(&filter.program).map_err(|e| match e {
        seccompiler::Error::Prctl(io) => SeccompError::NoNewPrivs(io),
        seccompiler::Error::Seccomp(io) => SeccompError::Install(io),
        // The remaining variants (empty filter, thread sync, JSON, backend) cannot come
        // from a compiled, non-empty program applied without TSYNC.
        other => SeccompError::Install(std::io::Error::other(other.to_string())),
    })
}

/// Compiles any table of rules (the tests compile subsets).
///
/// The table is data checked by a test (`the_table_is_consistent`): a syscall is refused
/// either always or under conditions, with one errno, comparing values of at most 32 bits;
/// only whole syscalls are refused with another errno than `EPERM`.
pub fn compile(rules: &[Rule]) -> Result<JobFilter, SeccompError> {
    let mut program = x32_guard();
    let mut chains: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for rule in rules {
        match rule.deny {
            Deny::Eperm => chains
                .entry(rule.nr)
                .or_default()
                .extend(seccomp_rules(rule)?),
            other => program.extend(refuse_whole(rule.nr, other)),
        }
    }
    let refuse = SeccompAction::Errno(Deny::Eperm.errno().unsigned_abs());
    let allow = SeccompAction::Allow;
    let table = SeccompFilter::new(chains, allow, refuse, TargetArch::x86_64)?;
    program.extend(BpfProgram::try_from(table)?);
    Ok(JobFilter { program })
}

/// The rule as seccompiler rules (alternatives); empty = every call.
fn seccomp_rules(rule: &Rule) -> Result<Vec<SeccompRule>, SeccompError> {
    let cond = |arg: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
    };
    let conditions = match rule.when {
        When::Always => return Ok(vec![]),
        When::FlagSet { arg, flag } => vec![cond(arg, SeccompCmpOp::MaskedEq(flag), flag)?],
        When::ArgsEq(pairs) => pairs
            .iter()
            .map(|&(arg, value)| cond(arg, SeccompCmpOp::Eq, value))
            .collect::<Result<_, _>>()?,
        When::ArgNotIn { arg, allowed } => allowed
            .iter()
            .map(|&value| cond(arg, SeccompCmpOp::Ne, value))
            .collect::<Result<_, _>>()?,
    };
    Ok(vec![SeccompRule::new(conditions)?])
}

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K
const fn op(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// `AUDIT_ARCH` checks cannot tell x32 from x86_64 (both report x86_64); x32 calls carry bit
/// 30 in the syscall number. Kill them before seccompiler's own arch check (which kills i386).
/// Leaves the syscall number in the accumulator, for [`refuse_whole`].
fn x32_guard() -> Vec<sock_filter> {
    const SECCOMP_DATA_NR_OFFSET: u32 = 0;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    vec![
        op(LD_W_ABS, 0, 0, SECCOMP_DATA_NR_OFFSET),
        op(JGE_K, 0, 1, X32_SYSCALL_BIT),
        op(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ]
}

/// Refuses syscall `nr` (in the accumulator) with `deny`'s errno. It runs before seccompiler's
/// architecture check, so an i386 call with the same number is refused too instead of killed:
/// these checks only ever refuse, so nothing gets through that way.
fn refuse_whole(nr: i64, deny: Deny) -> [sock_filter; 2] {
    let nr = u32::try_from(nr).unwrap_or(u32::MAX);
    let errno = libc::SECCOMP_RET_ERRNO | (deny.errno().unsigned_abs() & libc::SECCOMP_RET_DATA);
    [op(JEQ_K, 0, 1, nr), op(RET_K, 0, 0, errno)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refuses tables seccompiler would compile into something other than what they say: a syscall
    /// refused always and conditionally (an empty chain means "always" and would swallow the
    /// conditions), one syscall under two errnos, values wider than the 32 bits compared.
    fn check_table(rules: &[Rule]) -> Result<(), &'static str> {
        for (i, rule) in rules.iter().enumerate() {
            for other in rules[..i].iter().filter(|o| o.nr == rule.nr) {
                if other.deny != rule.deny {
                    return Err("two errnos");
                }
                if other.when == When::Always || rule.when == When::Always {
                    return Err("always and conditional");
                }
            }
            if rule.deny != Deny::Eperm && rule.when != When::Always {
                return Err("a conditional refusal with another errno than EPERM");
            }
            let values: Vec<u64> = match rule.when {
                When::Always => vec![],
                When::FlagSet { flag, .. } => vec![flag],
                When::ArgsEq(pairs) => pairs.iter().map(|(_, v)| *v).collect(),
                When::ArgNotIn { allowed, .. } => allowed.to_vec(),
            };
            if values.iter().any(|v| *v > u64::from(u32::MAX)) {
                return Err("wider than 32 bits");
            }
        }
        Ok(())
    }

    #[test]
    fn the_table_is_consistent() {
        assert_eq!(check_table(RULES), Ok(()));
    }

    #[test]
    fn names_are_unique_and_every_rule_says_why() {
        let mut names: Vec<_> = RULES.iter().map(|r| r.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "duplicate rule names");
        for r in RULES {
            assert!(r.why.len() > 20, "{}: reason too short", r.name);
            assert!(
                r.name.split(' ').next().is_some_and(|s| !s.is_empty()),
                "{}",
                r.name
            );
        }
    }

    #[test]
    fn the_table_compiles_into_one_program_that_starts_with_the_x32_guard() {
        let f = job_filter().expect("table compiles");
        assert!(f.instructions() < 4096, "{} instructions", f.instructions());
        assert_eq!(f.program[..3], x32_guard()[..]);
        // clone3, the one call refused with ENOSYS, right after the guard.
        assert_eq!(
            f.program[3..5],
            refuse_whole(libc::SYS_clone3, Deny::Enosys)[..]
        );
        assert_eq!(
            f.program[4].k,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }

    #[test]
    fn contradictory_tables_are_refused() {
        let always_and_some = [
            always("unshare", libc::SYS_unshare, "x"),
            only("unshare X", libc::SYS_unshare, flag(0, CLONE_NEWNS), "x"),
        ];
        assert_eq!(check_table(&always_and_some), Err("always and conditional"));
        let two_errnos = [
            always("clone3", libc::SYS_clone3, "x"),
            Rule {
                deny: Deny::Enosys,
                ..always("clone3 again", libc::SYS_clone3, "x")
            },
        ];
        assert_eq!(check_table(&two_errnos), Err("two errnos"));
        let wide = [only(
            "ioctl wide",
            libc::SYS_ioctl,
            When::ArgsEq(&[(1, 1 << 40)]),
            "x",
        )];
        assert_eq!(check_table(&wide), Err("wider than 32 bits"));
        let conditional_enosys = [Rule {
            deny: Deny::Enosys,
            ..only("unshare X", libc::SYS_unshare, flag(0, CLONE_NEWNS), "x")
        }];
        let refused = check_table(&conditional_enosys);
        assert_eq!(
            refused,
            Err("a conditional refusal with another errno than EPERM")
        );
    }

    #[test]
    fn conditional_rules_for_one_syscall_are_alternatives() {
        // Both ioctl rules land in one chain: a filter with both is longer than with either.
        let ioctl: Vec<Rule> = RULES
            .iter()
            .filter(|r| r.nr == libc::SYS_ioctl)
            .copied()
            .collect();
        assert_eq!(ioctl.len(), 2);
        let one = compile(&ioctl[..1]).unwrap();
        let both = compile(&ioctl).unwrap();
        assert!(both.instructions() > one.instructions());
    }
}
