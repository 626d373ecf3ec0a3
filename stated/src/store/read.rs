//! Reads, each in its own read transaction (a consistent snapshot, concurrent with writes).

use std::ops::Bound;

use joblet_ipc_proto::job::{JobId, JobRecord};
use redb::{Database, ReadOnlyTable, ReadableDatabase};

use super::{JOBS, MAX_RECORD_LEN, StoreError, record};

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<JobRecord>,
    /// True when records after the last one of this page exist.
    pub more: bool,
}

fn jobs_table(db: &Database) -> Result<ReadOnlyTable<&'static str, &'static [u8]>, StoreError> {
    let txn = db
        .begin_read()
        .map_err(|e| StoreError::storage("read transaction", e))?;
    txn.open_table(JOBS)
        .map_err(|e| StoreError::storage("opening the jobs table", e))
}

pub(super) fn get(db: &Database, job: &JobId) -> Result<JobRecord, StoreError> {
    let table = jobs_table(db)?;
    let value = table
        .get(job.as_str())
        .map_err(|e| StoreError::storage("read", e))?
        .ok_or_else(|| StoreError::NotFound(job.clone()))?;
    record::decode(job.as_str(), value.value())
}

/// A prefix of a job id: what a user may type for one.
fn valid_prefix(prefix: &str) -> bool {
    (1..=JobId::LEN).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}

pub(super) fn resolve(db: &Database, prefix: &str) -> Result<JobId, StoreError> {
    if !valid_prefix(prefix) {
        return Err(StoreError::BadPrefix(prefix.to_owned()));
    }
    let table = jobs_table(db)?;
    let mut found: Option<String> = None;
    let mut count = 0u64;
    // Keys sort as text, so every id with this prefix lies in one run starting at the prefix.
    for entry in table
        .range::<&str>(prefix..)
        .map_err(|e| StoreError::storage("range read", e))?
    {
        let (key, _) = entry.map_err(|e| StoreError::storage("range read", e))?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        count += 1;
        if found.is_none() {
            found = Some(key.to_owned());
        }
    }
    match (found, count) {
        (Some(key), 1) => JobId::parse(&key).map_err(|e| StoreError::Undecodable {
            job: key,
            reason: e.to_string(),
        }),
        (None, _) => Err(StoreError::NoMatch(prefix.to_owned())),
        (Some(_), count) => Err(StoreError::Ambiguous {
            prefix: prefix.to_owned(),
            count,
        }),
    }
}

pub(super) fn list(db: &Database, after: Option<&JobId>) -> Result<Page, StoreError> {
    let table = jobs_table(db)?;
    let lower = match after {
        Some(id) => Bound::Excluded(id.as_str()),
        None => Bound::Unbounded,
    };
    let range = table
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(|e| StoreError::storage("range read", e))?;
    let mut page = Page {
        records: Vec::new(),
        more: false,
    };
    // The stored length is at least the record's encoded length in a reply (postcard is
    // canonical on encode), so summing stored lengths never underestimates the frame.
    let mut used = 0usize;
    for entry in range {
        let (key, value) = entry.map_err(|e| StoreError::storage("range read", e))?;
        let (key, bytes) = (key.value(), value.value());
        if bytes.len() > MAX_RECORD_LEN {
            tracing::warn!(
                job = key,
                len = bytes.len(),
                "record too large to send; skipped"
            );
            continue;
        }
        let record = match record::decode(key, bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(job = key, error = %e, "undecodable record skipped in listing");
                continue;
            }
        };
        if used + bytes.len() > MAX_RECORD_LEN {
            page.more = true;
            break;
        }
        used += bytes.len();
        page.records.push(record);
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::valid_prefix;

    #[test]
    fn prefixes() {
        for ok in [
            "0",
            "0b7c",
            "0b7c1a2e-4f",
            "0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c",
        ] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in [
            "",
            "0B7C",
            "../",
            "0b7c\0",
            "g",
            " 0b7c",
            "0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b3c0",
        ] {
            assert!(!valid_prefix(bad), "{bad:?}");
        }
    }
}
