//! io bandwidth, measured on a real block device: a loop device with ext4, mounted on the
//! host and added to `filesystem.allowedMounts` (the io limit applies to the devices
//! backing the job's read-only mounts; its writable space is a memory tmpfs). The job reads
//! a file with `dd iflag=direct`, so the page cache cannot hide the device.

use joblet_tests::cgroupfs;
use joblet_tests::hostile::{line_value, sh_job};
use joblet_tests::loopdev::LoopMount;
use joblet_tests::{System, config, require_root};

use super::WAIT;

const FILE_MIB: u32 = 8;
const LIMIT_BPS: u64 = 2 << 20;

/// Milliseconds the job took to read `file` with direct io, as it measured them itself.
fn timed_read_script(file: &str) -> Vec<String> {
    sh_job(&format!(
        "s=$(date +%s%N); dd if={file} of=/dev/null bs=256k iflag=direct status=none || echo DD_FAILED
         e=$(date +%s%N); echo MS=$(( (e - s) / 1000000 ))"
    ))
}

fn read_ms(
    sys: &System,
    flags: &[&str],
    file: &str,
    check: impl FnOnce(&joblet_tests::Job),
) -> u64 {
    let job = sys.start_job(flags, &timed_read_script(file));
    check(&job);
    let st = sys.wait_done(&job, WAIT);
    let out = String::from_utf8_lossy(&sys.logs(&job)).into_owned();
    assert_eq!(st["status"], "COMPLETED", "{st}\n{out}");
    assert!(!out.contains("DD_FAILED"), "{out}");
    line_value(&out, "MS")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no timing in:\n{out}"))
}

/// `--max-iobps` and `joblet.defaultIoLimit` on a loop device: the job's cgroup names
/// that device with the limit, and reading 8 MiB at 2 MiB/s takes at least ~4 s, where
/// the same read without a limit is fast.
#[test]
fn io_bandwidth_is_limited_on_the_backing_device() {
    require_root!();
    let lm = LoopMount::create(64);
    let file = lm.write_file("big", FILE_MIB);
    let file = file.to_string_lossy().into_owned();
    let mount = lm.path().to_string_lossy().into_owned();
    let expected_ms = u64::from(FILE_MIB) * 1000 * (1 << 20) / LIMIT_BPS;

    let sys = System::start_with(|c| config::add_allowed_mount(c, &mount));
    let baseline = read_ms(&sys, &[], &file, |_| {});
    eprintln!("unlimited direct read of {FILE_MIB} MiB: {baseline} ms");
    assert!(
        baseline < expected_ms / 2,
        "the device itself needs {baseline} ms for what the limit allows in {expected_ms} ms: \
         the test cannot tell the limit from the device"
    );
    let flag = format!("--max-iobps={LIMIT_BPS}");
    let limited = read_ms(&sys, &[&flag], &file, |job| {
        let rules = cgroupfs::io_read_limits(&sys, job);
        assert!(
            rules.contains(&(lm.dev_numbers.clone(), LIMIT_BPS)),
            "the job's io rules {rules:?} do not limit {} ({})",
            lm.device,
            lm.dev_numbers
        );
        let st = sys.status(job);
        assert_eq!(st["maxIOBPS"], LIMIT_BPS, "{st}");
    });
    eprintln!("--max-iobps={LIMIT_BPS}: {limited} ms (expected about {expected_ms} ms)");
    assert!(
        limited * 4 >= expected_ms * 3,
        "read {FILE_MIB} MiB in {limited} ms at a limit of {LIMIT_BPS} B/s (>= {expected_ms} ms expected)"
    );
    sys.stop();

    let limit = LIMIT_BPS.to_string();
    let sys = System::start_with(|c| {
        config::add_allowed_mount(c, &mount);
        config::set(c, "defaultIoLimit", &limit);
    });
    let by_default = read_ms(&sys, &[], &file, |job| {
        let rules = cgroupfs::io_read_limits(&sys, job);
        assert!(
            rules.contains(&(lm.dev_numbers.clone(), LIMIT_BPS)),
            "defaultIoLimit: the job's io rules {rules:?} do not limit {}",
            lm.dev_numbers
        );
    });
    eprintln!("defaultIoLimit={LIMIT_BPS}: {by_default} ms");
    assert!(
        by_default * 4 >= expected_ms * 3,
        "defaultIoLimit: {by_default} ms"
    );
    sys.stop();

    let errors = lm.teardown();
    assert!(errors.is_empty(), "loop device cleanup: {errors:?}");
}
