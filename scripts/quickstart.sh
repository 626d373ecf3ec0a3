#!/usr/bin/env bash
# Builds Joblet, writes a development configuration into ./dev (certificates included),
# starts the system in the background and runs a first isolated job, showing its output.
# Needs root (namespaces, cgroups). Stop the system with: kill "$(cat dev/joblet.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "quickstart: run as root (sudo $0)" >&2; exit 1; }

cargo build --release --workspace --bins
BIN=$PWD/target/release
DEV=$PWD/dev
PORT=${JOBLET_PORT:-50051}

if [ -f "$DEV/joblet.pid" ] && kill -0 "$(cat "$DEV/joblet.pid")" 2>/dev/null; then
  echo "quickstart: a system from $DEV is already running (pid $(cat "$DEV/joblet.pid"))"
else
  [ -f "$DEV/config/joblet-config.yml" ] || "$BIN/joblet" init --dir "$DEV" --address "127.0.0.1:$PORT"
  chmod 755 "$DEV"
  "$BIN/joblet" --config "$DEV/config/joblet-config.yml" > "$DEV/joblet.log" 2>&1 &
  echo $! > "$DEV/joblet.pid"
  for _ in $(seq 100); do
    "$BIN/rnx" --config "$DEV/config/rnx-admin.yml" job list >/dev/null 2>&1 && break
    kill -0 "$(cat "$DEV/joblet.pid")" 2>/dev/null || { cat "$DEV/joblet.log"; exit 1; }
    sleep 0.1
  done
fi

echo "--- first job:"
"$BIN/rnx" --config "$DEV/config/rnx-admin.yml" job run --follow --max-memory=64 \
  sh -c 'echo "hello from $(hostname), uid $(id -u), pid $$"; ps -e -o pid,user,comm'
echo "--- the system keeps running (log: $DEV/joblet.log). Try:"
echo "    $BIN/rnx --config $DEV/config/rnx-admin.yml job list"
echo "    kill \$(cat $DEV/joblet.pid)    # stops it"
