#!/usr/bin/env bash
# Runs the suites that need cgroup v2 inside the emulated guest (scripts/vmkit), in one
# boot: the test binaries are built here, then executed in the guest, where /sys/fs/cgroup
# is cgroup2 with every controller. Exits with the guest's status.
set -euo pipefail
cd "$(dirname "$0")/.."
VMKIT_DIR=${VMKIT_DIR:-/var/cache/joblet-vmkit}
[ -f "$VMKIT_DIR/KVER" ] || scripts/vmkit/setup.sh

# package:test-target pairs run in the guest.
SUITES=${V2_SUITES:-"joblet-spawner:cgroup joblet-spawner:spawner joblet-spawner:factory joblet-spawner:hardening joblet-spawner:device_bpf joblet-spawner:landlock joblet-spawner:seccomp joblet-persistd:metrics joblet-persistd:process joblet-persistd:hostile joblet-tests:isolation joblet-tests:daemons joblet-tests:security joblet-tests:limits joblet-tests:host_features"}

cargo build --workspace --bins
# The emulated guest is slow (TCG): the whole list takes tens of minutes there.
export VMKIT_TIMEOUT=${VMKIT_TIMEOUT:-3600}
list=$(mktemp -p "$PWD" .v2-suites.XXXXXX)
trap 'rm -f "$list"' EXIT
for suite in $SUITES; do
  pkg=${suite%%:*}; test=${suite#*:}
  # The test target's executable (not the package's binaries, which cargo also lists).
  exe=$(cargo test -p "$pkg" --test "$test" --no-run --message-format=json \
        | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    t = m.get("target") or {}
    if m.get("executable") and "test" in t.get("kind", []) and t.get("name") == sys.argv[1]:
        print(m["executable"])' "$test" | tail -1) || true
  [ -n "$exe" ] || { echo "test-v2: no test binary for $suite" >&2; exit 1; }
  echo "$suite $exe" >> "$list"
done

guest=$(mktemp -p "$PWD" .v2-guest.XXXXXX.sh)
trap 'rm -f "$list" "$guest"' EXIT
# Executables are copied, without debug info, into the guest's memory: the guest reaches
# the host's files over 9p, where loading a 50 MB binary on every exec costs seconds.
cat > "$guest" <<GUEST
set -u
bins=\$(mktemp -d) tests=\$(mktemp -d)
# The helpers run as their own users and must reach their executables.
chmod 755 "\$bins" "\$tests"
for b in joblet joblet-api joblet-spawner joblet-stated joblet-persistd rnx; do
  objcopy --strip-debug "$PWD/target/debug/\$b" "\$bins/\$b" || exit 1
done
export CI=\${CI:-} RUST_BACKTRACE=1 JOBLET_BIN_DIR=\$bins
echo "guest: \$(uname -r), cgroup \$(stat -fc %T /sys/fs/cgroup)"
fail=0
while read -r suite exe; do
  echo "=== guest: \$suite (\$(date +%T))"
  t="\$tests/\${exe##*/}"
  objcopy --strip-debug "\$exe" "\$t" || { fail=1; continue; }
  "\$t" --test-threads=1 || fail=1
  rm -f "\$t"
done < "$list"
echo "=== guest: done (\$(date +%T))"
exit \$fail
GUEST
scripts/vmkit/vm-run.sh -m 4096 -- bash "$guest"
