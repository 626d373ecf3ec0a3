//! The host ids jobs' user namespaces map to, checked against this host at start: no user in
//! `/etc/passwd`, no group in `/etc/group` and no helper may own an id in that span, or a job's
//! root would be that user. `/etc/subuid` and `/etc/subgid` entries that hand the same ids to
//! someone else (rootless containers, LXD) are reported: those tools would share ids with jobs.
//!
//! Users that exist only in a network directory (LDAP, NIS) are not in these files; the
//! default span lies far above where directories allocate ids.

use std::ops::Range;
use std::path::{Path, PathBuf};

use joblet_ipc_proto::settings::UserNamespaces;

use crate::config::userns_span;
use crate::identity::Identities;

/// A subordinate-id entry with this owner is the operator recording that the span is
/// Joblet's (`joblet:<hostBase>:<range × slots>`), not a conflict.
pub const RESERVATION_OWNER: &str = "joblet";

#[derive(Debug, thiserror::Error)]
pub enum JobIdsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "security.userNamespace: {kind} {id} ({owner}) lies in the jobs' host ids \
         {first}-{last}, so a job's root would be that {what}; move hostBase, or lower range \
         or slots, so the span holds no id in use"
    )]
    Taken {
        kind: &'static str,
        what: &'static str,
        id: u32,
        owner: String,
        first: u64,
        last: u64,
    },
}

/// The texts of the host's user databases; `None` where a file does not exist.
#[derive(Debug, Default)]
pub struct HostIdFiles {
    pub passwd: String,
    pub group: String,
    pub subuid: Option<String>,
    pub subgid: Option<String>,
}

impl HostIdFiles {
    pub fn read() -> Result<HostIdFiles, JobIdsError> {
        Ok(HostIdFiles {
            passwd: read(Path::new("/etc/passwd"))?,
            group: read(Path::new("/etc/group"))?,
            subuid: read_optional(Path::new("/etc/subuid"))?,
            subgid: read_optional(Path::new("/etc/subgid"))?,
        })
    }
}

/// Reads the host's files and checks them; returns what is worth a warning.
pub fn check_host(userns: &UserNamespaces, ids: &Identities) -> Result<Vec<String>, JobIdsError> {
    if !userns.enabled {
        return Ok(Vec::new());
    }
    check(userns, ids, &HostIdFiles::read()?)
}

/// Refuses a span holding a user's, group's or helper's id; warns of subordinate-id entries
/// that hand out any of its ids.
pub fn check(
    userns: &UserNamespaces,
    ids: &Identities,
    files: &HostIdFiles,
) -> Result<Vec<String>, JobIdsError> {
    let span = userns_span(userns);
    let taken = |kind, what, id: u32, owner: String| {
        if span.contains(&u64::from(id)) {
            Err(JobIdsError::Taken {
                kind,
                what,
                id,
                owner,
                first: span.start,
                last: span.end - 1,
            })
        } else {
            Ok(())
        }
    };
    for (key, uid) in [
        ("supervisor.users.api", ids.api),
        ("supervisor.users.persistd", ids.persistd),
        ("supervisor.users.stated", ids.stated),
    ] {
        taken("uid", "helper", uid, key.into())?;
    }
    taken("gid", "group", ids.group, "supervisor.users.group".into())?;
    for entry in db_entries(&files.passwd) {
        taken(
            "uid",
            "user",
            entry.id,
            format!("user {} in /etc/passwd", entry.name),
        )?;
        if let Some(gid) = entry.primary_gid {
            let owner = format!("primary group of {} in /etc/passwd", entry.name);
            taken("gid", "group", gid, owner)?;
        }
    }
    for entry in db_entries(&files.group) {
        taken(
            "gid",
            "group",
            entry.id,
            format!("group {} in /etc/group", entry.name),
        )?;
    }
    let mut warnings = Vec::new();
    for (file, text) in [
        ("/etc/subuid", &files.subuid),
        ("/etc/subgid", &files.subgid),
    ] {
        if let Some(text) = text {
            warnings.extend(subordinate_overlaps(file, text, &span));
        }
    }
    Ok(warnings)
}

/// One line of `/etc/passwd` (`name:x:uid:gid:…`) or `/etc/group` (`name:x:gid:…`).
struct DbEntry<'a> {
    name: &'a str,
    id: u32,
    /// The user's primary group (passwd only).
    primary_gid: Option<u32>,
}

/// The parseable entries; comments, NIS `+`/`-` lines and malformed lines are skipped (the
/// C library skips them too).
fn db_entries(text: &str) -> impl Iterator<Item = DbEntry<'_>> {
    text.lines().filter_map(|line| {
        if line.starts_with(['#', '+', '-']) {
            return None;
        }
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let id = fields.next()?.trim().parse().ok()?;
        let primary_gid = fields.next().and_then(|g| g.trim().parse().ok());
        Some(DbEntry {
            name,
            id,
            primary_gid,
        })
    })
}

/// Warnings for the `owner:start:count` entries of a subordinate-id file that overlap `span`
/// and are not Joblet's own reservation.
fn subordinate_overlaps(file: &str, text: &str, span: &Range<u64>) -> Vec<String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?;
            let start: u64 = fields.next()?.parse().ok()?;
            let count: u64 = fields.next()?.parse().ok().filter(|c| *c > 0)?;
            let overlaps = start < span.end && span.start < start + count;
            (overlaps && owner != RESERVATION_OWNER).then(|| {
                format!(
                    "security.userNamespace: {file} gives {owner} the ids {start}-{}, which \
                     overlap the jobs' host ids {}-{}; a container run by {owner} could share \
                     ids with a job. Move hostBase, or record the span as Joblet's with the \
                     line `{RESERVATION_OWNER}:{}:{}` instead",
                    start + count - 1,
                    span.start,
                    span.end - 1,
                    span.start,
                    span.end - span.start
                )
            })
        })
        .collect()
}

fn read(path: &Path) -> Result<String, JobIdsError> {
    std::fs::read_to_string(path).map_err(|source| JobIdsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_optional(path: &Path) -> Result<Option<String>, JobIdsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(JobIdsError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERNS: UserNamespaces = UserNamespaces {
        enabled: true,
        host_base: 1_000_000,
        range: 65536,
        slots: 4,
    };
    // The span is 1000000-1262143.
    const IDS: Identities = Identities {
        api: 64701,
        persistd: 64702,
        stated: 64703,
        group: 64700,
    };

    fn files(passwd: &str, group: &str) -> HostIdFiles {
        HostIdFiles {
            passwd: passwd.into(),
            group: group.into(),
            subuid: None,
            subgid: None,
        }
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          # a comment\n\
                          +nisuser::::::\n\
                          alice:x:1000:1000::/home/alice:/bin/sh\n\
                          edge:x:999999:100::/:/bin/false\n\
                          nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nusers:x:100:\nafter:x:1262144:\n";

    #[test]
    fn a_free_span_passes_and_its_edges_are_exact() {
        assert!(
            check(&USERNS, &IDS, &files(PASSWD, GROUP))
                .unwrap()
                .is_empty()
        );
        // One id below and one past the span are not in it; the first and last are.
        for (id, inside) in [
            (999_999, false),
            (1_000_000, true),
            (1_262_143, true),
            (1_262_144, false),
        ] {
            let passwd = format!("{PASSWD}probe:x:{id}:100::/:/bin/false\n");
            let result = check(&USERNS, &IDS, &files(&passwd, GROUP));
            assert_eq!(result.is_err(), inside, "uid {id}");
        }
    }

    #[test]
    fn users_groups_and_helpers_in_the_span_are_refused_by_name() {
        let cases: Vec<(HostIdFiles, Identities, &str)> = vec![
            (
                files(&format!("{PASSWD}svc:x:1100000:100::/:/bin/false\n"), GROUP),
                IDS,
                "uid 1100000 (user svc in /etc/passwd)",
            ),
            (
                files(
                    &format!("{PASSWD}svc:x:2000:1000001::/:/bin/false\n"),
                    GROUP,
                ),
                IDS,
                "gid 1000001 (primary group of svc in /etc/passwd)",
            ),
            (
                files(PASSWD, &format!("{GROUP}lxd:x:1200000:\n")),
                IDS,
                "gid 1200000 (group lxd in /etc/group)",
            ),
            (
                files(PASSWD, GROUP),
                Identities {
                    stated: 1_000_005,
                    ..IDS
                },
                "uid 1000005 (supervisor.users.stated)",
            ),
            (
                files(PASSWD, GROUP),
                Identities {
                    group: 1_000_006,
                    ..IDS
                },
                "gid 1000006 (supervisor.users.group)",
            ),
        ];
        for (files, ids, words) in cases {
            let err = check(&USERNS, &ids, &files).unwrap_err().to_string();
            assert!(err.contains(words), "{err:?} lacks {words:?}");
            assert!(err.contains("1000000-1262143"), "{err}");
            assert!(err.starts_with("security.userNamespace"), "{err}");
        }
    }

    #[test]
    fn subordinate_ids_given_to_others_are_warned_about_ours_are_not() {
        let mut f = files(PASSWD, GROUP);
        f.subuid = Some(
            "alice:100000:65536\n\
             lxd:900000:100001\n\
             joblet:1000000:262144\n\
             bob:1262144:65536\n"
                .into(),
        );
        f.subgid = Some("carol:1262143:1\n".into());
        let warnings = check(&USERNS, &IDS, &f).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(warnings[0].contains("/etc/subuid gives lxd the ids 900000-1000000"));
        assert!(warnings[0].contains("`joblet:1000000:262144`"));
        assert!(warnings[1].contains("/etc/subgid gives carol"));
    }

    #[test]
    fn a_disabled_namespace_is_not_checked_against_the_host() {
        let off = UserNamespaces {
            enabled: false,
            host_base: 0,
            ..USERNS
        };
        assert!(check_host(&off, &IDS).unwrap().is_empty());
    }

    #[test]
    fn this_host_leaves_the_default_span_free() {
        let userns = UserNamespaces {
            enabled: true,
            host_base: crate::config::DEFAULT_USERNS_HOST_BASE,
            range: crate::config::DEFAULT_USERNS_RANGE,
            slots: crate::config::DEFAULT_USERNS_SLOTS,
        };
        check_host(&userns, &IDS).expect("the default span is free on a Debian host");
    }
}
