"""The real joblet-sdk-python (2.5.2, from PyPI) against a running Joblet-rs system.

Usage: RNX_CONFIG_PATH=rnx-admin.yml python3 sdk_smoke.py
Runs a job, reads its status until it ends, reads its logs, lists jobs. Exits non-zero
with a message on any mismatch.
"""

import sys
import time

from joblet import JobletClient
from joblet.proto import joblet_pb2

MARK = "hello-from-the-python-sdk"


def main() -> int:
    with JobletClient() as client:
        # The SDK's run_job() wrapper reads fields its own RunJobResponse lacks (a known
        # 2.5.2 defect, see shared/TESTING.md), so RunJob goes through its stub.
        req = joblet_pb2.RunJobRequest(
            command="sh",
            args=["-c", f"echo {MARK}; echo to-stderr 1>&2; exit 7"],
            environment={"GREETING": "hi"},
            max_memory=64,
        )
        resp = client.jobs.stub.RunJob(req)
        job = resp.job_uuid
        assert len(job) == 36, f"job uuid {job!r}"
        status = None
        for _ in range(300):
            status = client.jobs.get_job_status(job)
            if status["status"] in ("COMPLETED", "FAILED", "STOPPED", "TIMEOUT"):
                break
            time.sleep(0.1)
        assert status is not None
        assert status["status"] == "FAILED", f"status {status}"
        assert status["exit_code"] == 7, f"exit code {status}"
        assert status["environment"].get("GREETING") == "hi", status
        logs = b"".join(client.jobs.get_job_logs(job)).decode()
        assert MARK in logs and "to-stderr" in logs, f"logs {logs!r}"
        listed = [j for j in client.jobs.list_jobs() if j["uuid"] == job]
        assert listed and listed[0]["status"] == "FAILED", f"list {listed}"
        print(f"sdk ok: job {job} FAILED exit 7, {len(logs)} bytes of logs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
