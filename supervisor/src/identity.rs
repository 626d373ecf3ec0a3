//! The numeric ids the helpers run as, resolved from the configured names or numbers.

use nix::unistd::{Gid, Group, Uid, User};

use crate::config::{IdRef, JobUser, UsersConfig};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{key}: no user named {name:?} on this host (create it, or give a numeric uid)")]
    NoUser { key: &'static str, name: String },
    #[error("{key}: no group named {name:?} on this host (create it, or give a numeric gid)")]
    NoGroup { key: &'static str, name: String },
    #[error("{key}: looking up {name:?} failed: {source}")]
    Lookup {
        key: &'static str,
        name: String,
        source: nix::Error,
    },
    #[error("{key}: {why}")]
    Refused { key: &'static str, why: String },
}

/// Who runs what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identities {
    pub api: u32,
    pub persistd: u32,
    pub stated: u32,
    /// The helpers' shared group: owner group of the run directory and its sockets.
    pub group: u32,
}

impl Identities {
    /// Resolves the names, then checks the ids keep the processes apart: no helper is root,
    /// no two share a uid, and jobs share neither a helper's uid nor the helpers' group.
    pub fn resolve(users: &UsersConfig, job: JobUser) -> Result<Identities, IdentityError> {
        let ids = Identities {
            api: uid("supervisor.users.api", &users.api)?,
            persistd: uid("supervisor.users.persistd", &users.persistd)?,
            stated: uid("supervisor.users.stated", &users.stated)?,
            group: gid("supervisor.users.group", &users.group)?,
        };
        ids.check(job)?;
        Ok(ids)
    }

    fn check(&self, job: JobUser) -> Result<(), IdentityError> {
        let helpers = [
            ("supervisor.users.api", self.api),
            ("supervisor.users.persistd", self.persistd),
            ("supervisor.users.stated", self.stated),
        ];
        for (i, (key, id)) in helpers.iter().enumerate() {
            if *id == 0 {
                return Err(IdentityError::Refused {
                    key,
                    why: "the unprivileged helpers must not run as root".into(),
                });
            }
            if let Some((other, _)) = helpers[..i].iter().find(|(_, o)| o == id) {
                return Err(IdentityError::Refused {
                    key,
                    why: format!("uid {id} is also {other}; each helper needs its own user"),
                });
            }
            if *id == job.uid {
                return Err(IdentityError::Refused {
                    key: "supervisor.jobUser.uid",
                    why: format!("uid {id} is also {key}; jobs must not run as a helper's user"),
                });
            }
        }
        if self.group == 0 {
            return Err(IdentityError::Refused {
                key: "supervisor.users.group",
                why: "the helpers' group must not be root's".into(),
            });
        }
        if self.group == job.gid {
            return Err(IdentityError::Refused {
                key: "supervisor.jobUser.gid",
                why: format!(
                    "gid {} is the helpers' group; jobs must not reach their sockets",
                    job.gid
                ),
            });
        }
        Ok(())
    }
}

fn uid(key: &'static str, r: &IdRef) -> Result<u32, IdentityError> {
    let by_name = |n: &str| User::from_name(n).map(|u| u.map(|u| u.uid.as_raw()));
    let missing = |key, name| IdentityError::NoUser { key, name };
    resolve(key, r, by_name, missing)
}

fn gid(key: &'static str, r: &IdRef) -> Result<u32, IdentityError> {
    let by_name = |n: &str| Group::from_name(n).map(|g| g.map(|g| g.gid.as_raw()));
    let missing = |key, name| IdentityError::NoGroup { key, name };
    resolve(key, r, by_name, missing)
}

/// A number as given, or a name looked up in the host's user or group database.
fn resolve(
    key: &'static str,
    r: &IdRef,
    by_name: impl FnOnce(&str) -> nix::Result<Option<u32>>,
    missing: impl FnOnce(&'static str, String) -> IdentityError,
) -> Result<u32, IdentityError> {
    let name = match r {
        IdRef::Id(id) => return Ok(*id),
        IdRef::Name(name) => name,
    };
    match by_name(name) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(missing(key, name.clone())),
        Err(source) => Err(IdentityError::Lookup {
            key,
            name: name.clone(),
            source,
        }),
    }
}

/// True when no user on this host has `id` as uid.
pub fn uid_unused(id: u32) -> bool {
    matches!(User::from_uid(Uid::from_raw(id)), Ok(None))
}

/// True when no group on this host has `id` as gid.
pub fn gid_unused(id: u32) -> bool {
    matches!(Group::from_gid(Gid::from_raw(id)), Ok(None))
}

/// True when a user named `name` exists.
pub fn user_exists(name: &str) -> bool {
    matches!(User::from_name(name), Ok(Some(_)))
}

/// True when a group named `name` exists.
pub fn group_exists(name: &str) -> bool {
    matches!(Group::from_name(name), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(api: IdRef, persistd: IdRef, stated: IdRef, group: IdRef) -> UsersConfig {
        UsersConfig {
            api,
            persistd,
            stated,
            group,
        }
    }
    const JOB: JobUser = JobUser {
        uid: 65534,
        gid: 65534,
    };

    #[test]
    fn resolves_numbers_and_names() {
        let u = users(
            IdRef::Id(64701),
            IdRef::Name("nobody".into()),
            IdRef::Id(64703),
            IdRef::Name("root".into()),
        );
        // `nobody` exists on every Debian host, as uid 65534; `root` as group 0 is refused.
        let err = Identities::resolve(&u, JobUser { uid: 1, gid: 2 }).unwrap_err();
        assert!(err.to_string().contains("supervisor.users.group"), "{err}");
        let u = UsersConfig {
            group: IdRef::Id(64700),
            ..u
        };
        let ids = Identities::resolve(&u, JobUser { uid: 1, gid: 2 }).unwrap();
        assert_eq!(ids.persistd, 65534);
        assert_eq!(ids.api, 64701);
    }

    #[test]
    fn refuses_unknown_names_shared_uids_root_and_job_overlap() {
        let ok = users(
            IdRef::Id(64701),
            IdRef::Id(64702),
            IdRef::Id(64703),
            IdRef::Id(64700),
        );
        assert!(Identities::resolve(&ok, JOB).is_ok());
        let cases = [
            (
                UsersConfig {
                    api: IdRef::Name("no-such-user-joblet-test".into()),
                    ..ok.clone()
                },
                JOB,
                "no user named",
            ),
            (
                UsersConfig {
                    group: IdRef::Name("no-such-group-joblet-test".into()),
                    ..ok.clone()
                },
                JOB,
                "no group named",
            ),
            (
                UsersConfig {
                    stated: IdRef::Id(64701),
                    ..ok.clone()
                },
                JOB,
                "also supervisor.users.api",
            ),
            (
                UsersConfig {
                    persistd: IdRef::Id(0),
                    ..ok.clone()
                },
                JOB,
                "root",
            ),
            (ok.clone(), JobUser { uid: 64702, gid: 1 }, "jobUser.uid"),
            (ok.clone(), JobUser { uid: 1, gid: 64700 }, "jobUser.gid"),
        ];
        for (u, job, words) in cases {
            let err = Identities::resolve(&u, job).unwrap_err().to_string();
            assert!(err.contains(words), "{err:?} lacks {words:?}");
        }
    }
}
