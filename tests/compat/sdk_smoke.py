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
        # Three wrappers of SDK 2.5.2 read fields its own descriptor does not have, and raise
        # AttributeError against any server (the Go one included): run_job() (fields of
        # RunJobResponse), get_job_status() and list_jobs() (`name`, removed upstream as
        # field 2). Those three go through the SDK's generated stub; the rest through its
        # wrappers.
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
            status = client.jobs.stub.GetJobStatus(joblet_pb2.GetJobStatusRequest(uuid=job))
            if status.status in ("COMPLETED", "FAILED", "STOPPED", "TIMEOUT"):
                break
            time.sleep(0.1)
        assert status is not None
        assert status.status == "FAILED", f"status {status}"
        assert status.exit_code == 7, f"exit code {status}"
        assert status.environment.get("GREETING") == "hi", status
        assert status.max_memory == 64, status
        assert status.start_time and status.end_time, status
        logs = b"".join(client.jobs.get_job_logs(job)).decode()
        assert MARK in logs and "to-stderr" in logs, f"logs {logs!r}"
        jobs = client.jobs.stub.ListJobs(joblet_pb2.EmptyRequest()).jobs
        listed = [j for j in jobs if j.uuid == job]
        assert listed and listed[0].status == "FAILED", f"list {listed}"
        # Wrappers that do work: delete_job().
        deleted = client.jobs.delete_job(job)
        assert deleted["success"], deleted
        print(f"sdk ok: job {job} FAILED exit 7, {len(logs)} bytes of logs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
