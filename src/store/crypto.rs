//! The sealing of SecretStore values, shared by every backend: values never reach a database in
//! plain text. Each SecretStore's `data` is sealed as one XChaCha20-Poly1305 blob with a random
//! 24-byte nonce and the resource identity (`SecretStore/<project>/<name>`) as associated data,
//! so a blob cannot be moved to another row. The 32-byte key lives in `secret.key` (0600) beside
//! the database.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::{Result, StoreError};
use crate::domain::manifest::SecretValue;
use crate::domain::snapshot::ResourceKey;
use crate::layout::KEY_FILE;

const MAGIC: &[u8; 8] = b"ORCHSEC1";
const NONCE_LEN: usize = 24;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

/// The secret encryption key, loaded from (or created as) `secret.key` with mode 0600.
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    pub fn load_or_create(data_dir: &Path) -> Result<SecretKey> {
        let path = data_dir.join(KEY_FILE);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let key = Key::try_generate().map_err(|_| StoreError::Random)?;
                let mut bytes = Zeroizing::new([0u8; 32]);
                bytes.copy_from_slice(&key);
                f.write_all(&bytes[..]).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
                fs::File::open(data_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(data_dir))?;
                Ok(SecretKey(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => SecretKey::load(&path),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Loads an existing key file (`--secret-key-file`, or the one in the data dir): 32 bytes,
    /// readable by its owner only.
    pub fn load(path: &Path) -> Result<SecretKey> {
        let mut f = fs::File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::KeyFileMissing {
                path: path.to_owned(),
            },
            _ => io_err(path)(e),
        })?;
        let mode = f.metadata().map_err(io_err(path))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(StoreError::KeyFilePermissions {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(33));
        Read::by_ref(&mut f)
            .take(33)
            .read_to_end(&mut buf)
            .map_err(io_err(path))?;
        if buf.len() != 32 {
            return Err(StoreError::KeyFileLength {
                path: path.to_owned(),
                len: buf.len(),
            });
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&buf);
        Ok(SecretKey(bytes))
    }

    /// A name for this key that reveals nothing of it: the first 16 hex digits of a SHA-256 over
    /// a fixed label and the key. A shared database records it, so that a node started with
    /// another key file is refused with both names.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"orchestrator secret key fingerprint\0");
        h.update(&self.0[..]);
        hex::encode(&h.finalize()[..8])
    }

    /// A key from its bytes (tests).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        SecretKey(Zeroizing::new(bytes))
    }

    pub fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(*self.0))
    }
}

fn aad(key: &ResourceKey) -> String {
    format!("{}/{}/{}", key.kind.as_str(), key.project, key.name)
}

/// Seals `data` for the resource `key`.
pub fn seal(
    cipher: &XChaCha20Poly1305,
    key: &ResourceKey,
    data: &BTreeMap<String, SecretValue>,
) -> Result<Vec<u8>> {
    let plain: BTreeMap<&str, &str> = data.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
    let plaintext =
        Zeroizing::new(serde_json::to_vec(&plain).map_err(|e| StoreError::Corrupt {
            what: "secret data".into(),
            detail: e.to_string(),
        })?);
    let nonce = XNonce::try_generate().map_err(|_| StoreError::Random)?;
    let aad = aad(key);
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &plaintext,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| StoreError::Random)?;
    Ok([MAGIC.as_slice(), nonce.as_slice(), &ct].concat())
}

/// Opens a sealed blob of the resource `key`.
pub fn open(
    cipher: &XChaCha20Poly1305,
    key: &ResourceKey,
    blob: &[u8],
) -> Result<BTreeMap<String, SecretValue>> {
    let fail = || StoreError::Decrypt {
        resource: format!("{key} in project {}", key.project),
    };
    if blob.len() < MAGIC.len() + NONCE_LEN + 16 || &blob[..MAGIC.len()] != MAGIC {
        return Err(fail());
    }
    let nonce_bytes = &blob[MAGIC.len()..MAGIC.len() + NONCE_LEN];
    let nonce = XNonce::try_from(nonce_bytes).map_err(|_| fail())?;
    let aad = aad(key);
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &blob[MAGIC.len() + NONCE_LEN..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| fail())?,
    );
    let map: BTreeMap<String, String> =
        serde_json::from_slice(&plain).map_err(|e| StoreError::Corrupt {
            what: format!("secret data of {key}"),
            detail: e.to_string(),
        })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, SecretValue::new(v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::Kind;

    #[test]
    fn a_blob_moved_to_another_row_does_not_decrypt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cipher = SecretKey::load_or_create(dir.path())
            .expect("open")
            .cipher();
        let a = ResourceKey::new("default", Kind::SecretStore, "a");
        let b = ResourceKey::new("default", Kind::SecretStore, "b");
        let data = BTreeMap::from([("k".to_string(), SecretValue::new("v".into()))]);
        let blob = seal(&cipher, &a, &data).expect("seal");
        assert!(open(&cipher, &a, &blob).is_ok());
        assert!(matches!(
            open(&cipher, &b, &blob),
            Err(StoreError::Decrypt { .. })
        ));
    }
}
