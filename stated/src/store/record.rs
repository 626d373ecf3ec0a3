//! Stored values: the postcard encoding of a [`JobRecord`], decoded strictly.

use joblet_ipc_proto::job::JobRecord;

use super::{MAX_RECORD_LEN, StoreError};

/// Encodes a record for storage, refusing one too large to be sent back in a reply.
pub(super) fn encode(record: &JobRecord) -> Result<Vec<u8>, StoreError> {
    let bytes = postcard::to_allocvec(record).map_err(|e| StoreError::Encode {
        job: record.id.clone(),
        reason: e.to_string(),
    })?;
    if bytes.len() > MAX_RECORD_LEN {
        return Err(StoreError::TooLarge {
            job: record.id.clone(),
            len: bytes.len(),
            max: MAX_RECORD_LEN,
        });
    }
    Ok(bytes)
}

/// Decodes the value stored under `key`. Trailing bytes or an id that is not the key mean the
/// value was not written by this version (or was damaged): it is reported, never guessed at,
/// so a later write cannot silently drop fields a newer version stored.
pub(super) fn decode(key: &str, bytes: &[u8]) -> Result<JobRecord, StoreError> {
    let undecodable = |reason: String| StoreError::Undecodable {
        job: key.to_owned(),
        reason,
    };
    let (record, rest) =
        postcard::take_from_bytes::<JobRecord>(bytes).map_err(|e| undecodable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(undecodable(format!(
            "{} unexpected bytes after the record",
            rest.len()
        )));
    }
    if record.id.as_str() != key {
        return Err(undecodable(format!(
            "the record names job {}, not its key",
            record.id
        )));
    }
    Ok(record)
}
