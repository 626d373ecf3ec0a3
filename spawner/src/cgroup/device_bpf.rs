//! The cgroup v2 device allow-list. cgroup v2 has no devices controller: the kernel asks a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the cgroup instead. This one is written as
//! raw eBPF instructions generated from [`ALLOWED`] (no clang, no libbpf), loaded with
//! `bpf(BPF_PROG_LOAD)` and attached with `bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE)`.
//!
//! The spawner attaches it to the job's cgroup right after creating it and before any job
//! process enters (clone3 `CLONE_INTO_CGROUP`), so no job code ever runs without it. It then
//! governs every `open` of a device node and every `mknod` inside the job, whatever the
//! filesystem, uid or capabilities; the job's minimal `/dev`, nodev mounts and dropped
//! capabilities are the other layers.
//!
//! Attached with `BPF_F_ALLOW_MULTI`: programs that ancestor cgroups attach the same way (as
//! systemd does) still run, and every one of them must allow an access. The attachment lives as
//! long as the cgroup; our program fd is closed once attached. The program's memory is charged
//! to the spawner's memory cgroup on 6.x kernels (not to RLIMIT_MEMLOCK); it is a few hundred
//! bytes.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use crate::sys;

/// `BPF_DEVCG_DEV_*`: the device type in the low 16 bits of `access_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Block = 1,
    Char = 2,
}

// `BPF_DEVCG_ACC_*`: the access in the high 16 bits of `access_type`.
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// A device the job may open (read, write) and create with `mknod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedDevice {
    pub name: &'static str,
    pub kind: DeviceKind,
    pub major: u32,
    /// `None`: every minor of the major.
    pub minor: Option<u32>,
    pub access: u32,
}

const fn char_dev(name: &'static str, major: u32, minor: Option<u32>) -> AllowedDevice {
    AllowedDevice {
        name,
        kind: DeviceKind::Char,
        major,
        minor,
        access: ACC_ALL,
    }
}

/// Exactly the nodes of the job's `/dev`; everything else is refused with `EPERM`.
pub const ALLOWED: &[AllowedDevice] = &[
    char_dev("null", 1, Some(3)),
    char_dev("zero", 1, Some(5)),
    char_dev("full", 1, Some(7)),
    char_dev("random", 1, Some(8)),
    char_dev("urandom", 1, Some(9)),
    char_dev("tty", 5, Some(0)),
    char_dev("ptmx", 5, Some(2)),
    char_dev("pts/*", 136, None),
];

#[derive(Debug, thiserror::Error)]
pub enum DeviceFilterError {
    #[error("load the cgroup device program: {errno}{}", load_hint(*errno))]
    Load { errno: Errno },
    #[error("attach the cgroup device program to the job's cgroup: {errno}{}", attach_hint(*errno))]
    Attach { errno: Errno },
}

fn load_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EPERM => " (the spawner needs CAP_BPF or CAP_SYS_ADMIN)",
        Errno::EINVAL => " (the kernel lacks BPF_PROG_TYPE_CGROUP_DEVICE: CONFIG_CGROUP_BPF)",
        _ => "",
    }
}

fn attach_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EBADF => " (not a directory of the cgroup v2 hierarchy)",
        Errno::EPERM => {
            " (the spawner needs CAP_NET_ADMIN/CAP_SYS_ADMIN, or an ancestor cgroup holds a \
             device program that allows no others)"
        }
        _ => "",
    }
}

/// Loads the [`ALLOWED`] program and attaches it to the cgroup v2 directory `cgroup_dir`.
/// Call it before any process is in the cgroup.
pub fn attach_device_filter(cgroup_dir: BorrowedFd<'_>) -> Result<(), DeviceFilterError> {
    let program = program(ALLOWED);
    let prog = load(&program)?;
    let attr = ProgAttachAttr {
        target_fd: fd_u32(cgroup_dir.as_raw_fd()),
        attach_bpf_fd: fd_u32(prog.as_raw_fd()),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: `attr` is a live, fully initialised prefix of `union bpf_attr` for
    // BPF_PROG_ATTACH, of the size passed; the kernel copies it and looks the two fds up.
    let ret = unsafe { bpf(BPF_PROG_ATTACH, &attr) };
    sys::unit_result(ret).map_err(|errno| DeviceFilterError::Attach { errno })?;
    tracing::debug!(
        instructions = program.len(),
        "cgroup device program attached"
    );
    Ok(())
}

/// One eBPF instruction, `struct bpf_insn` (registers: destination in the low nibble).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes used (`<linux/bpf.h>`, `<linux/bpf_common.h>`).
pub const LDX_MEM_W: u8 = 0x61;
pub const ALU64_MOV_X: u8 = 0xbf;
pub const ALU64_MOV_K: u8 = 0xb7;
pub const ALU64_AND_K: u8 = 0x57;
pub const ALU64_RSH_K: u8 = 0x77;
pub const JMP_JNE_K: u8 = 0x55;
pub const JMP_EXIT: u8 = 0x95;

// Registers: R1 holds `struct bpf_cgroup_dev_ctx *` on entry, R0 the verdict (1 allow, 0 deny).
const R0: u8 = 0;
const R1: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The program for `allowed`:
///
/// ```text
///   r2 = ctx->access_type; r3 = r2; r2 &= 0xffff (type); r3 >>= 16 (access)
///   r4 = ctx->major; r5 = ctx->minor
///   per device: if r2 != type goto next; if r4 != major goto next; [if r5 != minor goto next;]
///               [if r3 & ~access goto next;] return 1
///   return 0
/// ```
pub fn program(allowed: &[AllowedDevice]) -> Vec<Insn> {
    // `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
    let mut prog = vec![
        insn(LDX_MEM_W, TYPE, R1, 0, 0),
        insn(ALU64_MOV_X, ACCESS, TYPE, 0, 0),
        insn(ALU64_AND_K, TYPE, 0, 0, 0xffff),
        insn(ALU64_RSH_K, ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, MAJOR, R1, 4, 0),
        insn(LDX_MEM_W, MINOR, R1, 8, 0),
    ];
    prog.extend(allowed.iter().flat_map(device_block));
    prog.push(insn(ALU64_MOV_K, R0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    prog
}

/// The checks for one device; every "no" jumps just past the block.
fn device_block(dev: &AllowedDevice) -> Vec<Insn> {
    // Sentinel offset, patched below once the block's length is known.
    const NEXT: i16 = i16::MAX;
    let imm = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let mut block = vec![
        insn(JMP_JNE_K, TYPE, 0, NEXT, dev.kind as i32),
        insn(JMP_JNE_K, MAJOR, 0, NEXT, imm(dev.major)),
    ];
    if let Some(minor) = dev.minor {
        block.push(insn(JMP_JNE_K, MINOR, 0, NEXT, imm(minor)));
    }
    let denied_access = !dev.access & ACC_ALL;
    if denied_access != 0 {
        block.push(insn(ALU64_MOV_X, R0, ACCESS, 0, 0));
        block.push(insn(ALU64_AND_K, R0, 0, 0, imm(denied_access)));
        block.push(insn(JMP_JNE_K, R0, 0, NEXT, 0));
    }
    block.push(insn(ALU64_MOV_K, R0, 0, 0, 1));
    block.push(insn(JMP_EXIT, 0, 0, 0, 0));
    let len = block.len();
    for (i, ins) in block.iter_mut().enumerate() {
        if ins.code == JMP_JNE_K && ins.off == NEXT {
            ins.off = i16::try_from(len - i - 1).unwrap_or(i16::MAX);
        }
    }
    block
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// The `BPF_PROG_LOAD` prefix of `union bpf_attr` (fields up to `expected_attach_type`); the
/// ones left at their default are zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` prefix of `union bpf_attr`.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Loads the program. It is fixed and tested, so the verifier has nothing to say about it;
/// a refusal here is the kernel's (no CONFIG_CGROUP_BPF, no privilege), named by the hint.
fn load(program: &[Insn]) -> Result<OwnedFd, DeviceFilterError> {
    let license = c"Apache-2.0";
    let mut prog_name = [0u8; 16];
    prog_name[..14].copy_from_slice(b"joblet_devices");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(program.len()).unwrap_or(u32::MAX),
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `attr` is a fully initialised prefix of `union bpf_attr` for BPF_PROG_LOAD of the
    // size passed (no padding); `insns` and `license` point to live buffers of the stated
    // lengths for the whole call; the kernel writes nothing back (no log buffer).
    let ret = unsafe { bpf(BPF_PROG_LOAD, &attr) };
    // A new program fd that nothing else owns.
    sys::fd_result(ret).map_err(|errno| DeviceFilterError::Load { errno })
}

/// `bpf(2)` with `attr` and its size.
///
/// # Safety
/// `attr` must be a valid `union bpf_attr` prefix for `cmd`, whose pointers are valid for what
/// `cmd` does with them.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &T) -> libc::c_long {
    // SAFETY: guaranteed by the caller; `attr` is readable for its size.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, size_of::<T>()) }
}

fn fd_u32(fd: i32) -> u32 {
    u32::try_from(fd).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the subset of eBPF that [`program`] emits against one device access.
    fn run(prog: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            let imm = i64::from(i.imm) as u64;
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads come from the context");
                    r[dst] = u64::from(ctx[usize::try_from(i.off).unwrap() / 4]);
                }
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_MOV_K => r[dst] = imm,
                ALU64_AND_K => r[dst] &= imm,
                ALU64_RSH_K => r[dst] >>= imm,
                JMP_JNE_K => {
                    if r[dst] != imm {
                        pc += usize::try_from(i.off).unwrap();
                    }
                }
                JMP_EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn expected(allowed: &[AllowedDevice], kind: u32, access: u32, major: u32, minor: u32) -> bool {
        allowed.iter().any(|d| {
            d.kind as u32 == kind
                && d.major == major
                && d.minor.is_none_or(|m| m == minor)
                && access & !d.access == 0
        })
    }

    #[test]
    fn the_program_allows_exactly_the_table() {
        let prog = program(ALLOWED);
        assert_eq!(prog.last().map(|i| i.code), Some(JMP_EXIT));
        let minors = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255, 256, 1 << 19];
        let mut allowed = 0;
        for kind in [DeviceKind::Block as u32, DeviceKind::Char as u32] {
            for access in 1..=ACC_ALL {
                for major in 0..300 {
                    for minor in minors {
                        let want = expected(ALLOWED, kind, access, major, minor);
                        let got = run(&prog, kind, access, major, minor);
                        assert_eq!(
                            got,
                            u64::from(want),
                            "{kind} {major}:{minor} access {access}"
                        );
                        allowed += usize::from(want);
                    }
                }
            }
        }
        // 7 exact char devices + pts with every sampled minor, each for all 7 access sets.
        assert_eq!(allowed, (7 + minors.len()) * 7);
    }

    #[test]
    fn partial_access_is_checked() {
        let read_only = [AllowedDevice {
            access: ACC_READ,
            ..char_dev("kmsg", 1, Some(11))
        }];
        let prog = program(&read_only);
        let c = DeviceKind::Char as u32;
        assert_eq!(run(&prog, c, ACC_READ, 1, 11), 1);
        assert_eq!(run(&prog, c, ACC_WRITE, 1, 11), 0);
        assert_eq!(run(&prog, c, ACC_READ | ACC_WRITE, 1, 11), 0);
        assert_eq!(run(&prog, c, ACC_MKNOD, 1, 11), 0);
        assert_eq!(run(&prog, c, ACC_READ, 1, 12), 0);
    }

    #[test]
    fn the_table_lists_each_device_once() {
        for (i, d) in ALLOWED.iter().enumerate() {
            for o in &ALLOWED[..i] {
                assert!(
                    !(o.kind == d.kind && o.major == d.major && o.minor == d.minor),
                    "{} repeats {}",
                    d.name,
                    o.name
                );
            }
        }
    }
}
