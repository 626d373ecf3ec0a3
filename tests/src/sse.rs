//! The Server-Sent Events endpoint through `curl`, with the certificates of a generated
//! client configuration: PEM files, the event-stream parser, the job's output decoded from it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{System, host};

/// The cert, key and CA of an rnx client config, as PEM files for curl.
pub struct Pems {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

pub fn pems(sys: &System, config: &Path, name: &str) -> Pems {
    let text = std::fs::read_to_string(config).expect("client config");
    let write = |field: &str| {
        let pem = host::yaml_string(&text, &["nodes", "default", field])
            .unwrap_or_else(|| panic!("no {field} in {}", config.display()));
        let path = sys.dir.path().join(format!("{name}-{field}.pem"));
        std::fs::write(&path, pem).expect("write PEM");
        host::chmod(&path, 0o600);
        path
    };
    Pems {
        cert: write("cert"),
        key: write("key"),
        ca: write("ca"),
    }
}

pub fn curl(pems: &Pems, url: &str, extra: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "-N", "--max-time", "120"])
        .arg("--cert")
        .arg(&pems.cert)
        .arg("--key")
        .arg(&pems.key)
        .arg("--cacert")
        .arg(&pems.ca)
        .args(extra)
        .arg(url)
        .output()
        .expect("run curl")
}

#[derive(Debug)]
pub struct Event {
    pub name: String,
    pub id: Option<String>,
    pub data: String,
}

/// Splits an event stream into events (comments skipped).
pub fn events(text: &str) -> Vec<Event> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut ev = Event {
                name: "message".into(),
                id: None,
                data: String::new(),
            };
            let mut any = false;
            for line in block.lines().filter(|l| !l.starts_with(':')) {
                let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                any = true;
                match field {
                    "event" => ev.name = value.into(),
                    "id" => ev.id = Some(value.into()),
                    "data" => ev.data.push_str(value),
                    other => panic!("unexpected field {other:?} in {block:?}"),
                }
            }
            any.then_some(ev)
        })
        .collect()
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?} in {s:?}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let take = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    out
}

/// The job's output from an event stream: (stdout, stderr, both in sequence order, end).
pub fn decode_logs(text: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>, serde_json::Value) {
    let evs = events(text);
    let (mut out, mut err, mut all) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_seq: Option<u64> = None;
    let mut end = None;
    for e in &evs {
        match e.name.as_str() {
            "stdout" | "stderr" => {
                let seq: u64 = e.id.as_deref().expect("chunk id").parse().expect("seq");
                assert!(last_seq.is_none_or(|l| seq > l), "sequence not increasing");
                last_seq = Some(seq);
                let bytes = base64_decode(&e.data);
                all.extend_from_slice(&bytes);
                if e.name == "stdout" {
                    &mut out
                } else {
                    &mut err
                }
                .extend_from_slice(&bytes);
            }
            "end" => end = Some(serde_json::from_str(&e.data).expect("end is JSON")),
            other => panic!("unexpected event {other:?}: {}", e.data),
        }
    }
    let end = end.unwrap_or_else(|| panic!("no end event in:\n{text}"));
    (out, err, all, end)
}
