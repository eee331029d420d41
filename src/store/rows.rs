//! What every backend stores of desired state, in the backend-neutral form its rows hold: a
//! resource as text columns (metadata, spec and the last apply's declarations as JSON, secret
//! values as one sealed blob) and the per-key bookkeeping of a SecretStore apply. Each backend
//! reads and writes these with its own SQL; the decoding, sealing and the history detail are
//! the same for all.

use std::collections::BTreeMap;

use chacha20poly1305::XChaCha20Poly1305;
use chrono::{DateTime, Utc};

use super::crypto::{open, seal};
use super::{Result, StoreError};
use crate::api::HistoryEntry;
use crate::domain::manifest::{Kind, LastApplied, Metadata, SecretValue, Spec, fingerprint};
use crate::domain::secret_merge::SetBy;
use crate::domain::snapshot::{Resource, ResourceKey};

/// One row of the resources table.
pub(crate) struct StoredResource {
    pub project: String,
    pub kind: String,
    pub name: String,
    pub generation: i64,
    pub metadata: String,
    pub spec: String,
    pub sealed: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub applied: Option<String>,
}

impl StoredResource {
    /// The resource this row holds, its secret values opened with `cipher`.
    pub fn decode(self, cipher: &XChaCha20Poly1305) -> Result<Resource> {
        let StoredResource {
            project,
            kind,
            name,
            generation,
            metadata,
            spec,
            sealed,
            created_at,
            updated_at,
            applied,
        } = self;
        let corrupt = |what: &str, detail: String| StoreError::Corrupt {
            what: format!("{what} of {kind}/{name} in project {project}"),
            detail,
        };
        let kind_v = Kind::from_manifest(&kind)
            .ok_or_else(|| corrupt("kind", format!("unknown kind {kind:?}")))?;
        let key = ResourceKey::new(project.clone(), kind_v, name.clone());
        let metadata: Metadata =
            serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", e.to_string()))?;
        let spec_json: serde_json::Value =
            serde_json::from_str(&spec).map_err(|e| corrupt("spec", e.to_string()))?;
        let mut spec =
            Spec::from_json(kind_v, spec_json).map_err(|e| corrupt("spec", e.to_string()))?;
        if let Spec::SecretStore(s) = &mut spec {
            s.data = match &sealed {
                Some(blob) => open(cipher, &key, blob)?,
                None => BTreeMap::new(),
            };
            s.applied = applied
                .as_deref()
                .map(serde_json::from_str::<LastApplied>)
                .transpose()
                .map_err(|e| corrupt("last applied keys", e.to_string()))?;
        }
        Ok(Resource {
            key,
            metadata,
            spec,
            generation: generation as u64,
            created_at,
            updated_at,
        })
    }
}

/// The text columns of a resource being written; `sealed` and `applied` for a SecretStore only.
pub(crate) struct EncodedResource {
    pub metadata: String,
    pub spec: String,
    pub sealed: Option<Vec<u8>>,
    pub applied: Option<String>,
}

impl EncodedResource {
    pub fn new(r: &Resource, cipher: &XChaCha20Poly1305) -> Result<EncodedResource> {
        let json = |what: &str, e: serde_json::Error| StoreError::Corrupt {
            what: what.into(),
            detail: e.to_string(),
        };
        let metadata = serde_json::to_string(&r.metadata).map_err(|e| json("metadata", e))?;
        let (sealed, applied) = match &r.spec {
            Spec::SecretStore(s) => (
                Some(seal(cipher, &r.key, &s.data)?),
                s.applied
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| json("last applied keys", e))?,
            ),
            _ => (None, None),
        };
        Ok(EncodedResource {
            metadata,
            spec: r.spec.to_json().to_string(),
            sealed,
            applied,
        })
    }
}

/// A key whose value an apply changes: written with its new fingerprint and length, its
/// verification record cleared.
pub(crate) struct KeyUpsert<'a> {
    pub key: &'a str,
    pub fingerprint: String,
    pub length: i64,
}

/// How an apply changes a SecretStore's per-key metadata, and the history detail that says so:
/// fingerprints of all keys, which were added, removed or changed, and who changed them.
/// Unchanged keys are not written (they keep their `updated_at`, `set_by` and verification
/// record).
pub(crate) struct KeyChanges<'a> {
    pub upserts: Vec<KeyUpsert<'a>>,
    pub removed: Vec<String>,
    pub detail: serde_json::Value,
}

impl<'a> KeyChanges<'a> {
    /// `old`: the fingerprints recorded per key before this apply.
    pub fn new(
        old: &BTreeMap<String, String>,
        data: &'a BTreeMap<String, SecretValue>,
        by: SetBy,
    ) -> KeyChanges<'a> {
        let mut fingerprints = BTreeMap::new();
        let (mut added, mut changed, mut upserts) = (Vec::new(), Vec::new(), Vec::new());
        for (key, value) in data {
            let fp = fingerprint(value.expose());
            match old.get(key) {
                Some(prev) if *prev == fp => {}
                prev => {
                    if prev.is_some() {
                        changed.push(key.clone());
                    } else {
                        added.push(key.clone());
                    }
                    upserts.push(KeyUpsert {
                        key,
                        fingerprint: fp.clone(),
                        length: value.len() as i64,
                    });
                }
            }
            fingerprints.insert(key.clone(), fp);
        }
        let removed: Vec<String> = old
            .keys()
            .filter(|key| !data.contains_key(*key))
            .cloned()
            .collect();
        let detail = serde_json::json!({
            "keys": fingerprints,
            "added": added,
            "removed": removed,
            "changed": changed,
            "by": by.as_str(),
        });
        KeyChanges {
            upserts,
            removed,
            detail,
        }
    }
}

/// A history row, from its stored columns.
pub(crate) fn history_entry(
    key: &ResourceKey,
    at: DateTime<Utc>,
    revision: i64,
    generation: i64,
    action: String,
    detail: &str,
) -> Result<HistoryEntry> {
    let corrupt = |e: String| StoreError::Corrupt {
        what: format!("history of {key}"),
        detail: e,
    };
    Ok(HistoryEntry {
        at,
        revision: revision as u64,
        generation: generation as u64,
        action: serde_json::from_value(serde_json::Value::String(action))
            .map_err(|e| corrupt(e.to_string()))?,
        detail: serde_json::from_str(detail).map_err(|e| corrupt(e.to_string()))?,
    })
}
