//! Sealing the secret values of a SCHEDULED job, so stated keeps them only in a form it
//! cannot read: ChaCha20-Poly1305 with a key only the frontend holds (`key`), a fresh
//! random nonce per seal, and the job id as associated data, so a sealed blob moved to
//! another job's record does not open.
//!
//! Blob layout: `version (1) | nonce (12) | ciphertext | tag (16)`; the plaintext is the
//! postcard-encoded list of the job's secret variables (compact: a sealed blob is barely
//! larger than the values, so the record stays inside one IPC frame).

pub mod key;

use std::path::Path;

use joblet_ipc_proto::job::{EnvVar, JobId};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

pub use key::KeyFileError;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("cannot draw a random nonce")]
    Random,
    #[error("cannot encode the secrets: {0}")]
    Encode(String),
    #[error("encryption failed")]
    Encrypt,
    #[error("the sealed secrets are {0} bytes, too short to be sealed data")]
    Truncated(usize),
    #[error("the sealed secrets have format version {0}, this frontend reads version {VERSION}")]
    Version(u8),
    #[error(
        "the sealed secrets do not open with this server's sealing key (the key was replaced, \
         or the record was altered or belongs to another job)"
    )]
    Open,
    #[error("the opened secrets are not a list of variables: {0}")]
    Decode(String),
}

/// Seals and opens secret values with the frontend's key.
pub struct Sealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl Sealer {
    /// Loads the key from `dir` (creating it on first use).
    pub fn open(dir: &Path) -> Result<Sealer, SealError> {
        let mut bytes = key::load_or_create(dir)?;
        let sealer = Sealer::from_key(&bytes);
        bytes.fill(0);
        sealer
    }

    fn from_key(bytes: &[u8; key::KEY_LEN]) -> Result<Sealer, SealError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| SealError::Encrypt)?;
        Ok(Sealer {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// Seals `secrets` for `job`; nothing to seal gives an empty blob.
    pub fn seal(&self, job: &JobId, secrets: &[EnvVar]) -> Result<Vec<u8>, SealError> {
        if secrets.is_empty() {
            return Ok(Vec::new());
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut data =
            postcard::to_allocvec(secrets).map_err(|e| SealError::Encode(e.to_string()))?;
        let sealed = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(job.as_str().as_bytes()),
            &mut data,
        );
        if sealed.is_err() {
            data.fill(0);
            return Err(SealError::Encrypt);
        }
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + data.len());
        blob.push(VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&data);
        Ok(blob)
    }

    /// Opens what [`Sealer::seal`] made for the same job; an empty blob is no secrets.
    pub fn unseal(&self, job: &JobId, blob: &[u8]) -> Result<Vec<EnvVar>, SealError> {
        if blob.is_empty() {
            return Ok(Vec::new());
        }
        if blob.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(SealError::Truncated(blob.len()));
        }
        if blob[0] != VERSION {
            return Err(SealError::Version(blob[0]));
        }
        let nonce = Nonce::try_assume_unique_for_key(&blob[1..1 + NONCE_LEN])
            .map_err(|_| SealError::Open)?;
        let mut data = blob[1 + NONCE_LEN..].to_vec();
        let result =
            match self
                .key
                .open_in_place(nonce, Aad::from(job.as_str().as_bytes()), &mut data)
            {
                Ok(plain) => postcard::from_bytes::<Vec<EnvVar>>(plain)
                    .map_err(|e| SealError::Decode(e.to_string())),
                Err(_) => Err(SealError::Open),
            };
        // The plaintext must not linger in freed memory longer than needed.
        data.fill(0);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u8) -> JobId {
        JobId::parse(&format!("0b7c1a2e-4f3d-4e8a-9c61-2d5e7f9a1b{n:02x}")).unwrap()
    }

    fn secrets() -> Vec<EnvVar> {
        vec![
            EnvVar::new("API_TOKEN", "hunter2-very-secret"),
            EnvVar::new("DB_PASSWORD", "correct horse battery staple"),
        ]
    }

    fn sealer() -> (tempfile::TempDir, Sealer) {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn round_trip_without_clear_text_in_the_blob() {
        let (_d, s) = sealer();
        let blob = s.seal(&job(1), &secrets()).unwrap();
        for v in secrets() {
            assert!(
                !blob.windows(v.value.len()).any(|w| w == v.value.as_bytes()),
                "{} in clear",
                v.key
            );
        }
        assert_eq!(s.unseal(&job(1), &blob).unwrap(), secrets());
        assert!(s.seal(&job(1), &[]).unwrap().is_empty());
        assert!(s.unseal(&job(1), &[]).unwrap().is_empty());
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let (_d, s) = sealer();
        assert_ne!(
            s.seal(&job(1), &secrets()).unwrap(),
            s.seal(&job(1), &secrets()).unwrap()
        );
    }

    #[test]
    fn tampering_is_detected() {
        let (_d, s) = sealer();
        let blob = s.seal(&job(1), &secrets()).unwrap();
        for i in [1, NONCE_LEN + 1, blob.len() / 2, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(s.unseal(&job(1), &bad), Err(SealError::Open)),
                "flip at {i}"
            );
        }
        assert!(matches!(
            s.unseal(&job(1), &blob[..blob.len() - 1]),
            Err(SealError::Open)
        ));
        assert!(matches!(
            s.unseal(&job(1), &blob[..10]),
            Err(SealError::Truncated(10))
        ));
        let mut other_version = blob.clone();
        other_version[0] = 9;
        assert!(matches!(
            s.unseal(&job(1), &other_version),
            Err(SealError::Version(9))
        ));
    }

    #[test]
    fn a_blob_does_not_open_for_another_job_or_key() {
        let (_d, s) = sealer();
        let blob = s.seal(&job(1), &secrets()).unwrap();
        assert!(matches!(s.unseal(&job(2), &blob), Err(SealError::Open)));
        let (_d2, other) = sealer();
        assert!(matches!(other.unseal(&job(1), &blob), Err(SealError::Open)));
    }

    #[test]
    fn the_blob_is_barely_larger_than_the_values() {
        let (_d, s) = sealer();
        // Control characters would grow sixfold in JSON; the record must fit a frame.
        let v = vec![EnvVar::new("K", "\u{1}".repeat(50_000))];
        let blob = s.seal(&job(1), &v).unwrap();
        assert!(blob.len() <= 50_000 + 64, "{} bytes", blob.len());
        assert_eq!(s.unseal(&job(1), &blob).unwrap(), v);
    }

    #[test]
    fn the_same_key_file_opens_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let blob = Sealer::open(dir.path())
            .unwrap()
            .seal(&job(3), &secrets())
            .unwrap();
        let again = Sealer::open(dir.path()).unwrap();
        assert_eq!(again.unseal(&job(3), &blob).unwrap(), secrets());
    }
}
