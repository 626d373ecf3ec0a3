use super::*;
use joblet_api_proto::metadata::{EXIT_CODE, FINAL_STATUS};
use time::macros::datetime;
use tonic::metadata::MetadataValue;

const NOW: OffsetDateTime = datetime!(2026-11-23 16:25:50 UTC);

fn finished() -> GetJobStatusResponse {
    let mut s = GetJobStatusResponse {
        uuid: "1a2b3c4d-0000-4000-8000-000000000000".into(),
        command: "python3".into(),
        args: vec!["app.py".into()],
        status: "FAILED".into(),
        start_time: "2026-11-23T16:20:50Z".into(),
        end_time: "2026-11-23T16:21:00Z".into(),
        exit_code: 137,
        max_cpu: 50,
        max_memory: 512,
        network: "none".into(),
        volumes: vec!["data".into()],
        ..Default::default()
    };
    s.environment.insert("MODE".into(), "prod".into());
    s.secret_environment
        .insert("TOKEN".into(), "leaked-if-shown".into());
    s
}

#[test]
fn terminal_job_shows_every_section_and_masks_secrets() {
    let end = EndInfo {
        reason: Some("out of memory (OOM killed)".into()),
        detail: None,
    };
    let text = render(&finished(), &end, NOW);
    for expected in [
        "Job ID: 1a2b3c4d-0000-4000-8000-000000000000\n",
        "Command: python3 app.py\n",
        "Status: FAILED\n",
        "\nTiming:\n  Created: 2026-11-23 16:20:50 UTC\n  Ended: 2026-11-23 16:21:00 UTC\n  Duration: 10.0s\n",
        "\nResource Limits:\n  Max CPU: 50%\n  Max Memory: 512 MB\n",
        "\nNetwork Configuration:\n  Network: none\n",
        "\nVolumes:\n  - data\n",
        "\nEnvironment Variables:\n  MODE=prod\n  TOKEN=*** (secret)\n",
        "\nResult:\n  Exit Code: 137\n  End Reason: out of memory (OOM killed)\n",
        "rnx job log 1a2b3c4d",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("leaked-if-shown"));
    assert!(!text.contains("Scheduling Information"));
    assert!(!text.contains("Runtime Environment"));
}

#[test]
fn running_job_has_no_result_and_shows_how_long() {
    let mut s = finished();
    s.status = "RUNNING".into();
    s.end_time.clear();
    s.timeout = "10m".into();
    let text = render(&s, &EndInfo::default(), NOW);
    assert!(text.contains("  Running For: 5.0m\n"), "{text}");
    assert!(text.contains("  Timeout: 10m\n"), "{text}");
    assert!(!text.contains("Exit Code"), "{text}");
    assert!(text.contains("rnx job stop"), "{text}");
}

#[test]
fn scheduled_job_shows_when() {
    let mut s = finished();
    s.status = "SCHEDULED".into();
    s.scheduled_time = "2026-11-23T18:25:50Z".into();
    let text = render(&s, &EndInfo::default(), NOW);
    assert!(
        text.contains("Scheduling Information:\n  Scheduled Time: 2026-11-23 18:25:50 UTC\n  Time Until Execution: 2h\n"),
        "{text}"
    );
}

#[test]
fn json_has_joblets_keys_and_masked_secrets() {
    let end = EndInfo {
        reason: Some("exited".into()),
        detail: Some("d".into()),
    };
    let v = to_json(&finished(), &end);
    for key in [
        "uuid",
        "nodeId",
        "command",
        "args",
        "status",
        "startTime",
        "endTime",
        "exitCode",
        "scheduledTime",
        "environment",
        "secretEnvironment",
        "network",
        "volumes",
        "runtime",
        "workDir",
        "uploads",
        "maxCPU",
        "maxMemory",
        "endReason",
        "endDetail",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    for absent in [
        "maxIOBPS",
        "cpuCores",
        "gpuCount",
        "gpuMemoryMb",
        "gpuIndices",
        "timeout",
    ] {
        assert!(v.get(absent).is_none(), "unexpected {absent} in {v}");
    }
    assert_eq!(v["secretEnvironment"], json!({"TOKEN": "***"}));
    assert_eq!(v["exitCode"], json!(137));
    assert_eq!(v["maxCPU"], json!(50));
}

#[test]
fn end_reason_comes_from_response_metadata() {
    let mut md = MetadataMap::new();
    md.insert(END_REASON, MetadataValue::from_static("timeout"));
    md.insert(END_DETAIL, MetadataValue::from_static("ran past 10m"));
    assert_eq!(
        EndInfo::from_metadata(&md),
        EndInfo {
            reason: Some("timeout".into()),
            detail: Some("ran past 10m".into())
        }
    );
    assert_eq!(
        EndInfo::from_metadata(&MetadataMap::new()),
        EndInfo::default()
    );
}

#[test]
fn end_reason_codes_are_described_for_people() {
    assert_eq!(
        describe_end_reason("oom_killed"),
        "out of memory (OOM killed)"
    );
    assert_eq!(describe_end_reason("something-new"), "something-new");
}

#[test]
fn terminal_states() {
    for s in ["COMPLETED", "FAILED", "STOPPED", "CANCELED", "TIMEOUT"] {
        assert!(is_terminal(s), "{s}");
    }
    for s in ["RUNNING", "SCHEDULED", "INITIALIZING"] {
        assert!(!is_terminal(s), "{s}");
    }
}

#[test]
fn a_final_state_is_taken_only_from_complete_terminal_trailers() {
    use tonic::metadata::MetadataMap;
    let md = |pairs: &[(&'static str, &str)]| {
        let mut md = MetadataMap::new();
        for (k, v) in pairs {
            md.insert(*k, v.parse().unwrap());
        }
        md
    };
    let full = md(&[
        (FINAL_STATUS, "FAILED"),
        (EXIT_CODE, "3"),
        (END_REASON, "exited"),
    ]);
    assert_eq!(
        FinalState::from_trailers(&full),
        Some(FinalState {
            status: "FAILED".into(),
            exit_code: 3,
            end: EndInfo {
                reason: Some("exited".into()),
                detail: None
            },
        })
    );
    for partial in [
        md(&[(FINAL_STATUS, "RUNNING"), (EXIT_CODE, "0")]),
        md(&[(FINAL_STATUS, "COMPLETED")]),
        md(&[(EXIT_CODE, "0")]),
        md(&[(FINAL_STATUS, "COMPLETED"), (EXIT_CODE, "zero")]),
        MetadataMap::new(),
    ] {
        assert_eq!(FinalState::from_trailers(&partial), None, "{partial:?}");
    }
}
