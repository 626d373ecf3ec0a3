"""The real joblet-sdk-python (2.5.2, from PyPI) against a running Joblet-rs system: every
JobService and MonitoringService method, with the configuration written by `joblet init`.

Usage: RNX_CONFIG_PATH=rnx-admin.yml python3 sdk_full.py
Exits non-zero with a message on the first mismatch.

Three wrappers of SDK 2.5.2 read fields its own descriptor does not have and raise
AttributeError against any server (the Go one included): run_job() (fields of
RunJobResponse), get_job_status() and list_jobs() (`name`, removed upstream as field 2).
Those three go through the SDK's generated stub; every other method through its wrapper.
"""

import sys
import time
from datetime import datetime, timedelta, timezone

from joblet import JobletClient
from joblet.exceptions import JobNotFoundError
from joblet.proto import joblet_pb2

MARK = "hello-from-the-python-sdk"
TERMINAL = ("COMPLETED", "FAILED", "STOPPED", "CANCELED", "TIMEOUT")


def status(client, job):
    return client.jobs.stub.GetJobStatus(joblet_pb2.GetJobStatusRequest(uuid=job))


def run(client, **fields):
    job = client.jobs.stub.RunJob(joblet_pb2.RunJobRequest(**fields)).job_uuid
    assert len(job) == 36, f"job uuid {job!r}"
    return job


def wait_state(client, job, states, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        st = status(client, job)
        if st.status in states:
            return st
        time.sleep(0.1)
    raise AssertionError(f"job {job} not in {states} after {seconds}s: {status(client, job)}")


def check_run_status_logs_list(client):
    uploads = [
        joblet_pb2.FileUpload(path="data", is_directory=True, mode=0o755),
        joblet_pb2.FileUpload(path="data/input.txt", content=b"uploaded-bytes\n", mode=0o640),
    ]
    job = run(
        client,
        command="sh",
        args=["-c", f"echo {MARK}; cat data/input.txt; stat -c %a data/input.txt; "
                    "echo $GREETING $TOKEN; echo to-stderr 1>&2; exit 7"],
        environment={"GREETING": "hi"},
        secret_environment={"TOKEN": "s3cr3t-value"},
        max_memory=64,
        max_cpu=50,
        uploads=uploads,
    )
    st = wait_state(client, job, TERMINAL)
    assert st.status == "FAILED" and st.exit_code == 7, st
    assert st.environment.get("GREETING") == "hi", st
    assert dict(st.secret_environment) == {"TOKEN": "***"}, st
    assert st.max_memory == 64 and st.max_cpu == 50, st
    assert "data/input.txt" in st.uploads, st
    assert st.start_time and st.end_time, st
    logs = b"".join(client.jobs.get_job_logs(job)).decode()
    for want in (MARK, "uploaded-bytes", "640", "hi s3cr3t-value", "to-stderr"):
        assert want in logs, f"{want!r} not in logs {logs!r}"
    listed = [j for j in client.jobs.stub.ListJobs(joblet_pb2.EmptyRequest()).jobs if j.uuid == job]
    assert listed and listed[0].status == "FAILED", f"list {listed}"
    assert "s3cr3t-value" not in str(listed[0]), "a secret value in ListJobs"
    return job


def check_stop(client):
    job = run(client, command="sleep", args=["300"])
    wait_state(client, job, ("RUNNING",))
    resp = client.jobs.stop_job(job)
    assert resp["uuid"] == job, resp
    st = wait_state(client, job, TERMINAL)
    assert st.status == "STOPPED", st
    return job


def check_schedule_and_cancel(client):
    when = (datetime.now(timezone.utc) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    resp = client.jobs.stub.RunJob(joblet_pb2.RunJobRequest(command="true", schedule=when))
    assert resp.status == "SCHEDULED", resp
    st = status(client, resp.job_uuid)
    assert st.status == "SCHEDULED" and st.scheduled_time, st
    canceled = client.jobs.cancel_job(resp.job_uuid)
    assert canceled["status"] == "CANCELED", canceled
    assert status(client, resp.job_uuid).status == "CANCELED"
    return resp.job_uuid


def check_metrics(client):
    job = run(client, command="sh", args=["-c", "while :; do :; done"], max_cpu=100)
    wait_state(client, job, ("RUNNING",))
    busy = None
    deadline = time.time() + 60
    for event in client.jobs.stream_job_metrics(job):
        assert event["job_id"] == job, event
        if event["cpu_percent"] > 20:
            busy = event
            break
        assert time.time() < deadline, "no busy metric sample within 60 s"
    assert busy is not None and busy["memory_bytes"] > 0, busy
    client.jobs.stop_job(job)
    wait_state(client, job, TERMINAL)
    history = list(client.jobs.get_job_metrics(job))
    assert history and any(e["cpu_percent"] > 20 for e in history), history
    assert list(client.jobs.get_job_metrics(job, limit=1)).__len__() == 1
    return job


def check_telematics_say_what_is_missing(client, job):
    for call in (lambda: list(client.jobs.stream_job_telematics(job)),
                 lambda: list(client.jobs.get_job_telematics(job))):
        try:
            call()
        except JobNotFoundError as e:
            assert "not implemented" in str(e), e
        else:
            raise AssertionError("telematics answered although kernel events are not implemented")


def check_monitoring(client):
    st = client.monitoring.get_system_status()
    assert st["available"], st
    assert st["host"]["hostname"], st["host"]
    assert st["cpu"]["cores"] >= 1, st["cpu"]
    assert st["memory"]["total_bytes"] > 0, st["memory"]
    assert st["server_version"]["version"], st["server_version"]
    seen = []
    for m in client.monitoring.stream_system_metrics(interval_seconds=1, metric_types=["cpu", "memory"]):
        seen.append(m)
        if len(seen) == 2:
            break
    assert all(m["cpu"]["cores"] >= 1 for m in seen), seen


def main() -> int:
    with JobletClient() as client:
        failed = check_run_status_logs_list(client)
        stopped = check_stop(client)
        canceled = check_schedule_and_cancel(client)
        busy = check_metrics(client)
        check_telematics_say_what_is_missing(client, busy)
        check_monitoring(client)
        deleted = client.jobs.delete_job(failed)
        assert deleted["success"], deleted
        keep = run(client, command="sleep", args=["300"])
        wait_state(client, keep, ("RUNNING",))
        everything = client.jobs.delete_all_jobs()
        assert everything["success"], everything
        assert everything["deleted_count"] >= 3, everything  # stopped, canceled, busy
        assert everything["skipped_count"] >= 1, everything  # the running one
        assert status(client, keep).status == "RUNNING"
        client.jobs.stop_job(keep)
        wait_state(client, keep, TERMINAL)
        print(f"sdk ok: every JobService and MonitoringService method ({stopped}, {canceled})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
