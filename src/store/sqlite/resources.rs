//! Desired state on SQLite (migrations 1 and 6): [`Resources`] implements [`ResourceStore`] on
//! one connection (`synchronous=FULL`). The `sealed` column holds each SecretStore's values as
//! one blob ([`crate::store::crypto`]); the spec column holds the masked form (`***` per key) so
//! that the rows stay inspectable with the `sqlite3` CLI; the `applied` column what the last
//! apply declared per key (fingerprints and keep markers, JSON; `NULL` for stores written before
//! the three-way merge). `secret_keys.set_by` says who set each key's live value.
//!
//! Every apply is one transaction ([`ResourceStore::commit`]): resources, the per-key secret
//! metadata and one history row per change, all or nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use chacha20poly1305::XChaCha20Poly1305;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, params};

use super::{Durability, connect, immediate, lock, migrate, parse_ts, ts};
use crate::api::{HistoryEntry, KeyMeta};
use crate::domain::manifest::{Kind, SecretValue, Spec};
use crate::domain::secret_merge::SetBy;
use crate::domain::snapshot::{Change, Outcome, ResourceKey, Snapshot};
use crate::store::crypto::SecretKey;
use crate::store::rows::{EncodedResource, KeyChanges, StoredResource, history_entry};
use crate::store::{ResourceStore, Result, StoreError};

/// The desired-state store of one SQLite database. Its single writer, the SecretStoreActor, runs
/// its calls where blocking is allowed; the lock is only ever contended by the daemon's first
/// snapshot read.
pub struct Resources {
    conn: Mutex<Connection>,
    key: SecretKey,
}

impl Resources {
    /// Opens the store in `data_dir` (which must exist), creating the key file and running
    /// migrations.
    pub fn open(data_dir: &Path) -> Result<Resources> {
        Resources::open_with_key(data_dir, SecretKey::load_or_create(data_dir)?)
    }

    /// Opens the store in `data_dir` with `key` (running migrations).
    pub fn open_with_key(data_dir: &Path, key: SecretKey) -> Result<Resources> {
        let mut conn = connect(data_dir, Durability::Full)?;
        migrate(&mut conn)?;
        Ok(Resources {
            conn: Mutex::new(conn),
            key,
        })
    }
}

fn read_revision(conn: &Connection) -> Result<u64> {
    let revision: String =
        conn.query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
            r.get(0)
        })?;
    revision.parse::<u64>().map_err(|e| StoreError::Corrupt {
        what: "revision".into(),
        detail: e.to_string(),
    })
}

impl ResourceStore for Resources {
    fn revision(&self) -> Result<u64> {
        read_revision(&lock(&self.conn))
    }

    fn load_snapshot(&self) -> Result<Snapshot> {
        let conn = lock(&self.conn);
        let revision = read_revision(&conn)?;
        let mut stmt = conn.prepare(
            "SELECT project, kind, name, generation, metadata, spec, sealed, created_at, updated_at, applied FROM resources",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<Vec<u8>>>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, Option<String>>(9)?,
            ))
        })?;
        let cipher = self.key.cipher();
        let mut resources = Vec::new();
        for row in rows {
            let (
                project,
                kind,
                name,
                generation,
                metadata,
                spec,
                sealed,
                created,
                updated,
                applied,
            ) = row?;
            let stored = StoredResource {
                project,
                kind,
                name,
                generation,
                metadata,
                spec,
                sealed,
                created_at: parse_ts(&created)?,
                updated_at: parse_ts(&updated)?,
                applied,
            };
            resources.push(stored.decode(&cipher)?);
        }
        Ok(Snapshot::new(revision, resources))
    }

    fn commit(
        &self,
        changes: &[Change],
        revision: u64,
        now: DateTime<Utc>,
        by: SetBy,
    ) -> Result<()> {
        if changes.iter().all(|c| c.outcome == Outcome::Unchanged) {
            return Ok(());
        }
        let cipher = self.key.cipher();
        let mut conn = lock(&self.conn);
        let tx = immediate(&mut conn)?;
        for c in changes {
            write_change(&tx, &cipher, c, revision, now, by)?;
        }
        tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'revision'")?
            .execute(params![revision.to_string()])?;
        tx.commit()?;
        Ok(())
    }

    fn history(&self, key: &ResourceKey, limit: usize) -> Result<Vec<HistoryEntry>> {
        let conn = lock(&self.conn);
        let mut stmt = conn.prepare(
            "SELECT at, revision, generation, action, detail FROM history
             WHERE project = ?1 AND kind = ?2 AND name = ?3 ORDER BY id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![key.project, key.kind.as_str(), key.name, limit as i64],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (at, revision, generation, action, detail) = row?;
            out.push(history_entry(
                key,
                parse_ts(&at)?,
                revision,
                generation,
                action,
                &detail,
            )?);
        }
        Ok(out)
    }

    fn key_meta(&self, project: &str, store: &str) -> Result<Vec<KeyMeta>> {
        key_meta(&lock(&self.conn), project, store)
    }
}

/// Per-key metadata of one SecretStore, ordered by key.
fn key_meta(conn: &Connection, project: &str, store: &str) -> Result<Vec<KeyMeta>> {
    let mut stmt = conn.prepare(
        "SELECT key, fingerprint, length, updated_at, last_verified_at, last_verified_trigger,
           last_tested_at, last_tested_trigger, last_tested_by, set_by
         FROM secret_keys WHERE project = ?1 AND store = ?2 ORDER BY key",
    )?;
    let rows = stmt.query_map(params![project, store], |r| {
        Ok((
            (
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ),
            [
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<String>>(9)?,
            ],
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (
            (key, fingerprint, length, updated),
            [verified, trigger, tested, tested_trigger, by, set_by],
        ) = row?;
        out.push(KeyMeta {
            key,
            fingerprint,
            length: length as usize,
            updated_at: parse_ts(&updated)?,
            last_verified_at: verified.as_deref().map(parse_ts).transpose()?,
            last_verified_trigger: trigger,
            last_tested_at: tested.as_deref().map(parse_ts).transpose()?,
            last_tested_trigger: tested_trigger,
            last_tested_by: by,
            set_by: set_by.as_deref().and_then(SetBy::parse),
        });
    }
    Ok(out)
}

fn write_change(
    tx: &Transaction<'_>,
    cipher: &XChaCha20Poly1305,
    c: &Change,
    revision: u64,
    now: DateTime<Utc>,
    by: SetBy,
) -> Result<()> {
    let r = &c.resource;
    let k = &r.key;
    let kind = k.kind.as_str();
    let detail = match c.outcome {
        Outcome::Unchanged => return Ok(()),
        Outcome::Deleted => {
            tx.prepare_cached(
                "DELETE FROM resources WHERE project = ?1 AND kind = ?2 AND name = ?3",
            )?
            .execute(params![k.project, kind, k.name])?;
            if k.kind == Kind::SecretStore {
                tx.prepare_cached("DELETE FROM secret_keys WHERE project = ?1 AND store = ?2")?
                    .execute(params![k.project, k.name])?;
            }
            serde_json::json!({})
        }
        Outcome::Created | Outcome::Configured => {
            let enc = EncodedResource::new(r, cipher)?;
            let detail = match &r.spec {
                Spec::SecretStore(s) => update_key_meta(tx, k, &s.data, now, by)?,
                _ => r.spec.to_json(),
            };
            tx.prepare_cached(
                "INSERT INTO resources (project, kind, name, generation, metadata, spec, sealed, created_at, updated_at, applied)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (project, kind, name) DO UPDATE SET generation = excluded.generation,
                   metadata = excluded.metadata, spec = excluded.spec, sealed = excluded.sealed,
                   updated_at = excluded.updated_at, applied = excluded.applied",
            )?
            .execute(params![
                k.project,
                kind,
                k.name,
                r.generation as i64,
                enc.metadata,
                enc.spec,
                enc.sealed,
                ts(r.created_at),
                ts(r.updated_at),
                enc.applied
            ])?;
            detail
        }
    };
    tx.prepare_cached(
        "INSERT INTO history (at, revision, project, kind, name, generation, action, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        ts(now),
        revision as i64,
        k.project,
        kind,
        k.name,
        r.generation as i64,
        c.outcome.as_str(),
        detail.to_string()
    ])?;
    Ok(())
}

/// Brings `secret_keys` in line with `data` and returns the history detail: fingerprints of all
/// keys, which were added, removed or changed, and who changed them. Unchanged keys keep their
/// `updated_at`, `set_by` and verification record.
fn update_key_meta(
    tx: &Transaction<'_>,
    k: &ResourceKey,
    data: &BTreeMap<String, SecretValue>,
    now: DateTime<Utc>,
    by: SetBy,
) -> Result<serde_json::Value> {
    let mut old: BTreeMap<String, String> = BTreeMap::new();
    {
        let mut stmt = tx.prepare(
            "SELECT key, fingerprint FROM secret_keys WHERE project = ?1 AND store = ?2",
        )?;
        let rows = stmt.query_map(params![k.project, k.name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            let (key, fp) = row?;
            old.insert(key, fp);
        }
    }
    let changes = KeyChanges::new(&old, data, by);
    for u in &changes.upserts {
        tx.prepare_cached(
            "INSERT INTO secret_keys (project, store, key, fingerprint, length, updated_at, set_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (project, store, key) DO UPDATE SET fingerprint = excluded.fingerprint,
               length = excluded.length, updated_at = excluded.updated_at,
               set_by = excluded.set_by,
               last_verified_at = NULL, last_verified_trigger = NULL,
               last_tested_at = NULL, last_tested_trigger = NULL, last_tested_by = NULL",
        )?
        .execute(params![
            k.project,
            k.name,
            u.key,
            u.fingerprint,
            u.length,
            ts(now),
            by.as_str()
        ])?;
    }
    for key in &changes.removed {
        tx.prepare_cached(
            "DELETE FROM secret_keys WHERE project = ?1 AND store = ?2 AND key = ?3",
        )?
        .execute(params![k.project, k.name, key])?;
    }
    Ok(changes.detail)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::domain::manifest::fingerprint;
    use crate::layout::{DB_FILE, KEY_FILE};
    use crate::store::conformance::{apply, secret_doc};

    #[test]
    fn secrets_round_trip_encrypted_and_history_has_no_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Resources::open(dir.path()).expect("open");
        let s1 = apply(
            &store,
            &Snapshot::default(),
            &secret_doc(&[("old", "plain-old-value")]),
        );
        let s2 = apply(
            &store,
            &s1,
            &secret_doc(&[("old", "plain-old-value"), ("new", "plain-new-value")]),
        );
        assert_eq!(s2.revision, 2);
        drop(store);

        let raw = fs::read(dir.path().join(DB_FILE)).expect("db");
        let wal = fs::read(dir.path().join("state.db-wal")).unwrap_or_default();
        for bytes in [&raw, &wal] {
            let hay = String::from_utf8_lossy(bytes);
            assert!(!hay.contains("plain-old-value") && !hay.contains("plain-new-value"));
        }
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let store = Resources::open(dir.path()).expect("reopen");
        let loaded = store.load_snapshot().expect("load");
        assert_eq!(loaded.revision, 2);
        let data = &loaded.secret_store("default", "hooks").expect("store").data;
        assert_eq!(data["new"].expose(), "plain-new-value");
        // What the last apply declared survives the reload (fingerprints only).
        let applied = loaded
            .secret_store("default", "hooks")
            .and_then(|s| s.applied.clone())
            .expect("a record of the last apply");
        assert_eq!(
            applied,
            s2.secret_store("default", "hooks")
                .and_then(|s| s.applied.clone())
                .expect("planned")
        );
        assert_eq!(
            applied.get("new"),
            Some(&crate::domain::manifest::Declared::Fingerprint(
                fingerprint("plain-new-value")
            ))
        );
        let hist = store
            .history(&ResourceKey::new("default", Kind::SecretStore, "hooks"), 10)
            .expect("history");
        assert_eq!(hist.len(), 2);
        assert_eq!(hist[0].detail["added"], serde_json::json!(["new"]));
        assert_eq!(
            hist[0].detail["keys"]["new"],
            fingerprint("plain-new-value")
        );
        let meta = store.key_meta("default", "hooks").expect("meta");
        assert_eq!(meta.len(), 2);
        assert_eq!(meta[0].key, "new");
        assert_eq!(meta[0].length, 15);
        assert_eq!(meta[0].set_by, Some(SetBy::Apply));
    }

    #[test]
    fn a_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Resources::open(dir.path()).expect("open"));
        let path = dir.path().join(KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Resources::open(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
