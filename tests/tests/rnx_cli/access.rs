//! Roles, connection failures, and several nodes in one config.

use std::time::Duration;

use joblet_tests::{host, require_root};
use serde_json::Value;

use crate::support::{
    self, Checks, Node, RNX_LIMIT, closed_port, listed_ids, rnx, rnx_limited, run_job, wait_done,
    write_config,
};

#[test]
fn a_viewer_reads_but_every_change_is_refused() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();
    let Some(done) = run_job(&mut c, &sys, &["echo", "for-viewers"]) else {
        return c.finish(sys);
    };
    wait_done(&mut c, &sys, &done, Duration::from_secs(60));
    let scheduled = run_job(&mut c, &sys, &["--schedule=1h", "true"]);
    let viewer = |args: &[&str]| rnx_limited(&sys, &sys.viewer, args, RNX_LIMIT);

    let reads: &[&[&str]] = &[
        &["job", "list"],
        &["job", "status", &done.id],
        &["job", "log", &done.id],
        &["monitor", "status"],
    ];
    for args in reads {
        c.exit(&format!("viewer {args:?}"), &viewer(args), 0, &[]);
    }
    let sched_id = scheduled.as_ref().map_or(done.id.clone(), |j| j.id.clone());
    let changes: &[&[&str]] = &[
        &["job", "run", "true"],
        &["job", "stop", &done.id],
        &["job", "cancel", &sched_id],
        &["job", "delete", &done.id],
        &["job", "delete-all"],
    ];
    for args in changes {
        c.exit(
            &format!("viewer {args:?}"),
            &viewer(args),
            4,
            &["permission denied", "viewer"],
        );
    }
    let after = listed_ids(&sys, &sys.admin);
    c.that(
        after.contains(&done.id),
        "a viewer's delete removed the job",
    );
    if let Some(job) = scheduled {
        c.exit(
            "admin cancels",
            &rnx(&sys, &["job", "cancel", &job.id]),
            0,
            &[],
        );
    }
    c.finish(sys);
}

#[test]
fn unreachable_nodes_wrong_cas_and_unknown_nodes() {
    require_root!();
    let sys = support::start();
    let mut c = Checks::new();
    let dir = sys.dir.path();
    let port = closed_port();
    let offline = format!("127.0.0.1:{port}");
    let (cert, key, _) = support::credentials(&sys.admin);
    let stranger_ca = other_ca_pem(&sys);
    let config = write_config(
        dir,
        "rnx-mixed.yml",
        &[
            Node::from("default", &sys.address, &sys.admin, true),
            Node::from("offline", &offline, &sys.admin, false),
            Node {
                name: "wrongca".into(),
                address: sys.address.clone(),
                cert,
                key,
                ca: stranger_ca,
                default: false,
            },
        ],
    );
    let mixed = |args: &[&str]| rnx_limited(&sys, &config, args, RNX_LIMIT);

    c.exit("default node", &mixed(&["job", "list"]), 0, &[]);
    c.exit(
        "unreachable node",
        &mixed(&["--node", "offline", "job", "list"]),
        5,
        &[&format!(
            "cannot reach node offline at {offline}: connection refused"
        )],
    );
    c.exit(
        "server certificate from another CA",
        &mixed(&["--node=wrongca", "job", "list"]),
        6,
        &["TLS handshake with node wrongca", "failed", "CA"],
    );
    c.exit(
        "unknown node",
        &mixed(&["--node", "nope", "job", "list"]),
        3,
        &["node 'nope' not found; configured nodes: default, offline, wrongca"],
    );
    c.exit(
        "inline --node in job run",
        &mixed(&["job", "run", "--node=offline", "true"]),
        5,
        &["cannot reach node offline"],
    );
    c.exit(
        "missing config",
        &rnx_limited(&sys, &dir.join("nope.yml"), &["job", "list"], RNX_LIMIT),
        1,
        &["nope.yml not found (given by --config)"],
    );

    // `nodes` lists all three without connecting, credentials hidden.
    let nodes = mixed(&["nodes"]);
    c.exit(
        "nodes",
        &nodes,
        0,
        &["*  default", "offline", "wrongca", &offline],
    );
    c.that(!nodes.stdout.contains("BEGIN"), "nodes shows PEM");
    let v = c.json("nodes --json", &mixed(&["--json", "nodes"]).stdout);
    let names: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["name"].as_str()).collect())
        .unwrap_or_default();
    c.that(
        names == ["default", "offline", "wrongca"],
        format!("nodes json: {v}"),
    );
    c.that(
        v[0]["default"] == true && v[0]["nodeId"] == "default-id",
        format!("{v}"),
    );

    let help = mixed(&["config-help"]);
    c.exit(
        "config-help",
        &help,
        0,
        &[
            "$RNX_CONFIG",
            "~/.rnx/rnx-config.yml",
            "isDefault",
            "nodeId",
            "--node",
        ],
    );
    let v = c.json(
        "config-help --json",
        &mixed(&["config-help", "--json"]).stdout,
    );
    c.that(
        v["example"].as_str().is_some_and(|e| e.contains("nodes:")),
        format!("{v}"),
    );

    // A group-readable config works, with a warning.
    host::chmod(&config, 0o644);
    c.exit("group-readable config", &mixed(&["job", "list"]), 0, &[]);
    c.that(
        mixed(&["job", "list"]).stderr.contains("chmod 600"),
        "no warning for a group-readable config",
    );
    c.finish(sys);
}

/// A CA certificate the system never heard of.
fn other_ca_pem(sys: &joblet_tests::System) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("stranger {}", sys.address),
    );
    params.self_signed(&key).expect("self-sign").pem()
}

#[test]
fn several_nodes_in_one_config() {
    require_root!();
    let east = support::start();
    let west = support::start();
    let mut c = Checks::new();
    let config = write_config(
        east.dir.path(),
        "rnx-fleet.yml",
        &[
            Node::from("east", &east.address, &east.admin, true),
            Node::from("west", &west.address, &west.admin, false),
        ],
    );
    let fleet = |args: &[&str]| rnx_limited(&east, &config, args, RNX_LIMIT);
    let submit = |args: &[&str]| -> Option<String> {
        let out = fleet(args);
        serde_json::from_str::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["job_uuid"].as_str().map(str::to_owned))
    };
    let on_west = submit(&["--node", "west", "--json", "job", "run", "echo", "west"]);
    let inline = submit(&["job", "run", "--json", "--node=west", "echo", "inline"]);
    let on_east = submit(&["--json", "job", "run", "echo", "east"]);
    c.that(
        on_west.is_some() && inline.is_some() && on_east.is_some(),
        "job run on the fleet",
    );
    let east_ids = listed_ids(&east, &east.admin);
    let west_ids = listed_ids(&west, &west.admin);
    for (id, want_west) in [(&on_west, true), (&inline, true), (&on_east, false)] {
        let Some(id) = id else { continue };
        c.that(
            west_ids.contains(id) == want_west && east_ids.contains(id) != want_west,
            format!("job {id} on the wrong node: east {east_ids:?}, west {west_ids:?}"),
        );
    }
    let listed = fleet(&["--node=west", "job", "list"]);
    c.exit("list on west", &listed, 0, &["echo west"]);
    c.that(
        !listed.stdout.contains("echo east"),
        "west lists east's job",
    );
    let nodes = fleet(&["nodes"]);
    c.exit("nodes", &nodes, 0, &["*  east", "west", &west.address]);
    c.finish(west);
    // `finish` of the second system: checks are already reported, so a clean stop is all.
    east.stop();
}
