//! Which users a development instance's helpers run as. Packaged installs create the system
//! users `joblet-api`, `joblet-persistd`, `joblet-stated` and the group `joblet`; `joblet init`
//! uses those names when they exist. Otherwise it picks numeric ids from the range
//! 64700–64799 that no user or group on this host has (it never creates users).

use crate::identity;

/// Numeric ids are taken from here: above the usual dynamic ranges, below `nobody` (65534).
pub const ID_RANGE: std::ops::RangeInclusive<u32> = 64700..=64799;

#[derive(Debug, thiserror::Error)]
#[error(
    "no free {what} id left in {}-{}; create the users joblet-api, joblet-persistd, \
     joblet-stated and the group joblet instead",
    ID_RANGE.start(), ID_RANGE.end()
)]
pub struct IdsExhausted {
    what: &'static str,
}

/// A user or group as written into the config: a name or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    Name(&'static str),
    Id(u32),
}

impl std::fmt::Display for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chosen::Name(n) => write!(f, "\"{n}\""),
            Chosen::Id(id) => write!(f, "{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperIds {
    pub api: Chosen,
    pub persistd: Chosen,
    pub stated: Chosen,
    pub group: Chosen,
}

/// Chooses with the host's user and group databases.
pub fn choose() -> Result<HelperIds, IdsExhausted> {
    choose_with(
        &identity::user_exists,
        &identity::group_exists,
        &identity::uid_unused,
        &identity::gid_unused,
    )
}

/// The choice, given the lookups (separate for tests).
pub fn choose_with(
    user_exists: &dyn Fn(&str) -> bool,
    group_exists: &dyn Fn(&str) -> bool,
    uid_unused: &dyn Fn(u32) -> bool,
    gid_unused: &dyn Fn(u32) -> bool,
) -> Result<HelperIds, IdsExhausted> {
    let group = if group_exists("joblet") {
        Chosen::Name("joblet")
    } else {
        Chosen::Id(
            ID_RANGE
                .clone()
                .find(|g| gid_unused(*g))
                .ok_or(IdsExhausted { what: "group" })?,
        )
    };
    // Numeric uids start after the range's first number, which is the group's by convention.
    let mut free_uids = ID_RANGE.clone().skip(1).filter(|u| uid_unused(*u));
    let mut user = |name: &'static str| -> Result<Chosen, IdsExhausted> {
        if user_exists(name) {
            Ok(Chosen::Name(name))
        } else {
            free_uids
                .next()
                .map(Chosen::Id)
                .ok_or(IdsExhausted { what: "user" })
        }
    };
    Ok(HelperIds {
        api: user("joblet-api")?,
        persistd: user("joblet-persistd")?,
        stated: user("joblet-stated")?,
        group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_skip_taken_ones_and_names_win() {
        let none = |_: &str| false;
        let ids = choose_with(&none, &none, &|u| u != 64702, &|_| true).unwrap();
        assert_eq!(
            ids,
            HelperIds {
                api: Chosen::Id(64701),
                persistd: Chosen::Id(64703),
                stated: Chosen::Id(64704),
                group: Chosen::Id(64700),
            }
        );
        let some = |n: &str| n == "joblet-persistd" || n == "joblet";
        let ids = choose_with(&some, &some, &|_| true, &|_| true).unwrap();
        assert_eq!(ids.persistd, Chosen::Name("joblet-persistd"));
        assert_eq!(ids.group, Chosen::Name("joblet"));
        assert_eq!(ids.api, Chosen::Id(64701));
        assert_eq!(ids.stated, Chosen::Id(64702));
    }

    #[test]
    fn a_full_range_is_an_error() {
        let none = |_: &str| false;
        let err = choose_with(&none, &none, &|_| false, &|_| true).unwrap_err();
        assert!(err.to_string().contains("no free user id"), "{err}");
    }
}
