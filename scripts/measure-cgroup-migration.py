#!/usr/bin/env python3
"""How long a cgroup v1 migration takes, both ways the spawner could do it (BENCHMARKS.md,
fix 10): a parent writing the child's pid into `cgroup.procs`, and the child writing 0
(itself) into `tasks`. Needs root and a v1 `cpu` hierarchy; makes its own child cgroup
and removes it. Usage: sudo scripts/measure-cgroup-migration.py [rounds]"""
import os
import sys
import time

BASE = f"/sys/fs/cgroup/cpu/joblet-measure-{os.getpid()}"


def migrate(self_write: bool) -> float:
    """Milliseconds one migration of a fresh child took."""
    go_r, go_w = os.pipe()
    took_r, took_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(go_r, 1)
        if self_write:
            start = time.perf_counter()
            with open(f"{BASE}/tasks", "w") as f:
                f.write("0")
            os.write(took_w, str(time.perf_counter() - start).encode())
        os._exit(0)
    took = 0.0
    if not self_write:
        start = time.perf_counter()
        with open(f"{BASE}/cgroup.procs", "w") as f:
            f.write(str(pid))
        took = time.perf_counter() - start
    os.write(go_w, b"x")
    os.waitpid(pid, 0)
    if self_write:
        took = float(os.read(took_r, 64).decode())
    for fd in (go_r, go_w, took_r, took_w):
        os.close(fd)
    return took * 1000


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    os.mkdir(BASE)
    try:
        parent, child = [], []
        for _ in range(rounds):
            time.sleep(0.2)  # longer than an RCU grace period: each migration is "first"
            parent.append(migrate(False))
            time.sleep(0.2)
            child.append(migrate(True))
        for name, v in (("parent writes the pid to cgroup.procs", parent),
                        ("child writes 0 to tasks", child)):
            v.sort()
            print(f"{name}: median {v[len(v) // 2]:.2f} ms, max {v[-1]:.2f} ms")
    finally:
        os.rmdir(BASE)


main()
