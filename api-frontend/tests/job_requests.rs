//! Job requests the frontend answers on its own, through the real TLS server and a real
//! client, with no backend running: hostile uploads, bad schedules, bad metric ranges are
//! refused by name; a scheduled job whose record cannot be written leaves no staged files;
//! secrets never reach the audit log; the sealing key is private.

mod support;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use joblet_api_proto::job_service_client::JobServiceClient;
use joblet_api_proto::{
    CancelJobRequest, DeleteAllJobsRequest, FileUpload, GetJobMetricsRequest, RunJobRequest,
};
use support::{Pki, Server};
use tonic::Code;
use tonic::transport::Channel;

async fn admin(pki: &Pki, server: &Server) -> JobServiceClient<Channel> {
    let creds = pki.client("admin-client", Some("admin"));
    JobServiceClient::new(server.channel(Some(&creds)).await.unwrap())
}

fn data_dir(server: &Server) -> PathBuf {
    server.audit_path.parent().unwrap().join("data")
}

fn upload(path: &str, content: &[u8]) -> FileUpload {
    FileUpload {
        path: path.into(),
        content: content.to_vec(),
        mode: 0o644,
        is_directory: false,
    }
}

fn with_uploads(uploads: Vec<FileUpload>) -> RunJobRequest {
    RunJobRequest {
        command: "cat".into(),
        args: vec!["x".into()],
        uploads,
        ..Default::default()
    }
}

#[tokio::test]
async fn hostile_uploads_are_refused_naming_the_path() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let mut jobs = admin(&pki, &server).await;
    for bad in ["/etc/cron.d/evil", "../escape", "a/../../x", "a//b", "./a"] {
        let err = jobs
            .run_job(with_uploads(vec![upload(bad, b"x")]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(
            err.message().contains(bad),
            "{bad} not named: {}",
            err.message()
        );
    }
    let err = jobs
        .run_job(with_uploads(vec![upload("a", b"1"), upload("a", b"2")]))
        .await
        .unwrap_err();
    assert!(err.message().contains("twice"), "{}", err.message());
    let err = jobs
        .run_job(with_uploads(vec![upload("a", b"1"), upload("a/b", b"2")]))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("uploaded as a file"),
        "{}",
        err.message()
    );
    // The test server allows 1 MiB in all.
    let err = jobs
        .run_job(with_uploads(vec![
            upload("one", &vec![0; 600 * 1024]),
            upload("two", &vec![0; 600 * 1024]),
        ]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("1048576 bytes"), "{}", err.message());
    // Nothing was staged for any of them.
    let staged = data_dir(&server).join("uploads");
    let left: Vec<_> = std::fs::read_dir(&staged)
        .map(|rd| rd.filter_map(|e| e.ok()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staged: {left:?}");
    server.stop().await;
}

#[tokio::test]
async fn bad_schedules_and_metric_ranges_are_refused() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let mut jobs = admin(&pki, &server).await;
    for (schedule, needle) in [
        ("2001-01-01T00:00:00Z", "passed"),
        ("9999-01-01T00:00:00Z", "more than a year ahead"),
        ("5min", "RFC 3339"),
    ] {
        let err = jobs
            .run_job(RunJobRequest {
                command: "true".into(),
                schedule: schedule.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{schedule}");
        assert!(err.message().contains(needle), "{}", err.message());
    }
    let err = jobs
        .get_job_metrics(GetJobMetricsRequest {
            job_uuid: "0b7c".into(),
            start_time: 20,
            end_time: 10,
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("after end_time"),
        "{}",
        err.message()
    );
    let err = jobs
        .cancel_job(CancelJobRequest {
            uuid: "not-hex!".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn a_scheduled_job_that_cannot_be_recorded_leaves_nothing_and_no_secret() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let mut jobs = admin(&pki, &server).await;
    let secret = "sealed-but-never-written-anywhere";
    let in_a_minute = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    let schedule = in_a_minute
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let err = jobs
        .run_job(RunJobRequest {
            command: "sh".into(),
            args: vec!["run.sh".into()],
            schedule,
            uploads: vec![upload("run.sh", b"echo hi")],
            secret_environment: HashMap::from([("TOKEN".to_owned(), secret.to_owned())]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    // stated is absent: the record cannot be written, so the job does not exist.
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("stated"), "{}", err.message());
    let staged = data_dir(&server).join("uploads");
    assert_eq!(
        std::fs::read_dir(&staged).unwrap().count(),
        0,
        "staged uploads of a job that was never recorded"
    );
    let key = std::fs::metadata(data_dir(&server).join("sealing.key")).unwrap();
    assert_eq!(key.mode() & 0o777, 0o600);
    assert_eq!(key.len(), 32);
    server
        .wait_for_audit(|v| v["method"] == "RunJob" && v["code"] == "UNAVAILABLE")
        .await;
    let audit = std::fs::read_to_string(&server.audit_path).unwrap();
    assert!(
        !audit.contains(secret) && !audit.contains("TOKEN"),
        "{audit}"
    );
    server.stop().await;
}

#[tokio::test]
async fn viewers_cannot_cancel_or_delete_all() {
    let pki = Pki::new("test-ca");
    let server = Server::start(&pki).await;
    let viewer = pki.client("viewer-client", Some("viewer"));
    let mut jobs = JobServiceClient::new(server.channel(Some(&viewer)).await.unwrap());
    let err = jobs
        .cancel_job(CancelJobRequest {
            uuid: "0b7c".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = jobs
        .delete_all_jobs(DeleteAllJobsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("DeleteAllJobs"), "{}", err.message());
    // Reading metrics is allowed past the roles; then stated is missing.
    let err = jobs
        .get_job_metrics(GetJobMetricsRequest {
            job_uuid: "0b7c".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    server.stop().await;
}
