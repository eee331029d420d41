//! The durable store: one SQLite database in the data dir (rusqlite, bundled SQLite, WAL,
//! `synchronous=FULL`), with versioned schema migrations, and the encryption of SecretStore values.
//!
//! Secret values never reach the database in plain text: each SecretStore's `data` is sealed as
//! one XChaCha20-Poly1305 blob with a random 24-byte nonce and the resource identity
//! (`SecretStore/<project>/<name>`) as associated data, so a blob cannot be moved to another row.
//! The 32-byte key lives in `secret.key` (0600) beside the database. The spec column holds the
//! masked form (`***` per key) so that the rows stay inspectable with the `sqlite3` CLI.
//!
//! Every apply is one transaction ([`Store::commit`]): resources, the per-key secret metadata and
//! one history row per change, all or nothing.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::api::{HistoryEntry, KeyMeta};
use crate::domain::manifest::{Kind, Metadata, SecretValue, Spec, fingerprint};
use crate::domain::snapshot::{Change, Outcome, Resource, ResourceKey, Snapshot};

pub use crate::layout::{DB_FILE, KEY_FILE};

const MAGIC: &[u8; 8] = b"ORCHSEC1";
const NONCE_LEN: usize = 24;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "secret key file {path} is accessible by group or others (mode {mode:o}): run `chmod 600 {path}`"
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error("secret key file {path} is {len} bytes, expected 32: restore it from backup")]
    KeyFileLength { path: PathBuf, len: usize },
    #[error(
        "cannot decrypt the values of {resource}: the secret key file does not match this database (restore the original {KEY_FILE})"
    )]
    Decrypt { resource: String },
    #[error("the operating system's random source failed")]
    Random,
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error(
        "database schema version {found} is newer than this binary supports ({supported}): upgrade orchestrator"
    )]
    TooNew { found: i64, supported: i64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Schema migrations; `PRAGMA user_version` holds how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: desired state, secret key metadata, change history.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('revision', '0');
     CREATE TABLE resources (
        project TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        generation INTEGER NOT NULL, metadata TEXT NOT NULL, spec TEXT NOT NULL,
        sealed BLOB, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (project, kind, name));
     CREATE TABLE secret_keys (
        project TEXT NOT NULL, store TEXT NOT NULL, key TEXT NOT NULL,
        fingerprint TEXT NOT NULL, length INTEGER NOT NULL, updated_at TEXT NOT NULL,
        last_verified_at TEXT, last_verified_trigger TEXT,
        PRIMARY KEY (project, store, key));
     CREATE TABLE history (
        id INTEGER PRIMARY KEY, at TEXT NOT NULL, revision INTEGER NOT NULL,
        project TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        generation INTEGER NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL);
     CREATE INDEX history_by_resource ON history (project, kind, name, id DESC);",
    // 2: tasks, their step runs and events.
    "CREATE TABLE tasks (
        id INTEGER PRIMARY KEY, project TEXT NOT NULL, workflow TEXT NOT NULL,
        workspace TEXT NOT NULL, workspace_root TEXT NOT NULL, workflow_spec TEXT NOT NULL,
        goal TEXT, payload TEXT, origin TEXT NOT NULL, trigger TEXT, scheduled_at TEXT,
        state TEXT NOT NULL, reason TEXT, held INTEGER NOT NULL DEFAULT 0,
        cycle INTEGER NOT NULL DEFAULT 0, step TEXT,
        created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT);
     CREATE INDEX tasks_by_state ON tasks (state, id);
     CREATE INDEX tasks_by_workflow ON tasks (project, workflow, state);
     CREATE INDEX tasks_by_trigger ON tasks (project, trigger, id DESC);
     CREATE TABLE step_runs (
        id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        step TEXT NOT NULL, cycle INTEGER NOT NULL, attempt INTEGER NOT NULL,
        agent TEXT, argv TEXT NOT NULL, pid INTEGER, pid_start INTEGER,
        state TEXT NOT NULL, exit_code INTEGER, signal INTEGER, reason TEXT,
        stdout TEXT, stdout_bytes INTEGER NOT NULL DEFAULT 0, stderr_bytes INTEGER NOT NULL DEFAULT 0,
        log_path TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT);
     CREATE INDEX step_runs_by_task ON step_runs (task_id, id);
     CREATE INDEX step_runs_by_state ON step_runs (state);
     CREATE TABLE task_events (
        id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        at TEXT NOT NULL, message TEXT NOT NULL);
     CREATE INDEX task_events_by_task ON task_events (task_id, id);",
    // 3: cron trigger state and fire history.
    "CREATE TABLE trigger_state (
        project TEXT NOT NULL, name TEXT NOT NULL, generation INTEGER NOT NULL,
        last_scheduled TEXT, last_fire TEXT, last_task INTEGER, next_fire TEXT,
        fires INTEGER NOT NULL DEFAULT 0, skips INTEGER NOT NULL DEFAULT 0,
        missed INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,
        PRIMARY KEY (project, name));
     CREATE TABLE trigger_events (
        id INTEGER PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, at TEXT NOT NULL,
        kind TEXT NOT NULL, scheduled TEXT, task_id INTEGER, lateness_ms REAL, reason TEXT);
     CREATE INDEX trigger_events_by_trigger ON trigger_events (project, name, id DESC);",
    // 4: staged secret rotations.
    "CREATE TABLE rotations (
        id INTEGER PRIMARY KEY, project TEXT NOT NULL, store TEXT NOT NULL, key TEXT NOT NULL,
        provider TEXT NOT NULL, stage TEXT NOT NULL, outcome TEXT, reason TEXT,
        old_fingerprint TEXT, new_fingerprint TEXT, platform_set INTEGER NOT NULL DEFAULT 0,
        started_at TEXT NOT NULL, set_at TEXT, verified_at TEXT, finished_at TEXT,
        updated_at TEXT NOT NULL);
     CREATE INDEX rotations_by_store ON rotations (project, store, id DESC);",
];

/// Formats a time the way the store writes it (RFC 3339, milliseconds, `Z`).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            what: "timestamp".into(),
            detail: format!("{s:?}: {e}"),
        })
}

/// Opens (creating if needed) a connection to the database with the durability settings.
/// Several connections write (desired state, tasks, triggers, verification stamps); every write
/// transaction is `BEGIN IMMEDIATE`, so that a writer waits (`busy_timeout`) instead of failing
/// when it would otherwise upgrade a stale read snapshot.
pub fn connect(data_dir: &Path) -> Result<Connection> {
    let conn = Connection::open(data_dir.join(DB_FILE))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
    )?;
    Ok(conn)
}

/// Runs the migrations that have not run yet, in one transaction.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {supported}"))?;
    tx.commit()?;
    Ok(())
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
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let mut f = fs::File::open(&path).map_err(io_err(&path))?;
                let mode = f.metadata().map_err(io_err(&path))?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(StoreError::KeyFilePermissions {
                        path,
                        mode: mode & 0o777,
                    });
                }
                let mut buf = Zeroizing::new(Vec::with_capacity(33));
                Read::by_ref(&mut f)
                    .take(33)
                    .read_to_end(&mut buf)
                    .map_err(io_err(&path))?;
                if buf.len() != 32 {
                    return Err(StoreError::KeyFileLength {
                        path,
                        len: buf.len(),
                    });
                }
                let mut bytes = Zeroizing::new([0u8; 32]);
                bytes.copy_from_slice(&buf);
                Ok(SecretKey(bytes))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(*self.0))
    }
}

fn aad(key: &ResourceKey) -> String {
    format!("{}/{}/{}", key.kind.as_str(), key.project, key.name)
}

/// Seals `data` for the resource `key`.
fn seal(
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
fn open(
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

/// The desired-state store, owned by the SecretStoreActor (the single writer).
pub struct Store {
    conn: Connection,
    key: SecretKey,
}

impl Store {
    /// Opens the store in `data_dir` (which must exist), creating the key file and running
    /// migrations.
    pub fn open(data_dir: &Path) -> Result<Store> {
        let key = SecretKey::load_or_create(data_dir)?;
        let mut conn = connect(data_dir)?;
        migrate(&mut conn)?;
        Ok(Store { conn, key })
    }

    /// Reads the whole desired state, decrypting secret values.
    pub fn load_snapshot(&self) -> Result<Snapshot> {
        let revision: String =
            self.conn
                .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
                    r.get(0)
                })?;
        let revision = revision.parse::<u64>().map_err(|e| StoreError::Corrupt {
            what: "revision".into(),
            detail: e.to_string(),
        })?;
        let mut stmt = self.conn.prepare(
            "SELECT project, kind, name, generation, metadata, spec, sealed, created_at, updated_at FROM resources",
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
            ))
        })?;
        let cipher = self.key.cipher();
        let mut resources = Vec::new();
        for row in rows {
            let (project, kind, name, generation, metadata, spec, sealed, created, updated) = row?;
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
                    Some(blob) => open(&cipher, &key, blob)?,
                    None => BTreeMap::new(),
                };
            }
            resources.push(Resource {
                key,
                metadata,
                spec,
                generation: generation as u64,
                created_at: parse_ts(&created)?,
                updated_at: parse_ts(&updated)?,
            });
        }
        Ok(Snapshot::new(revision, resources))
    }

    /// Commits `changes` as `revision` in one transaction. Unchanged entries are skipped; when
    /// nothing changed nothing is written.
    pub fn commit(&mut self, changes: &[Change], revision: u64, now: DateTime<Utc>) -> Result<()> {
        if changes.iter().all(|c| c.outcome == Outcome::Unchanged) {
            return Ok(());
        }
        let cipher = self.key.cipher();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for c in changes {
            write_change(&tx, &cipher, c, revision, now)?;
        }
        tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'revision'")?
            .execute(params![revision.to_string()])?;
        tx.commit()?;
        Ok(())
    }

    /// The newest `limit` history rows of one resource, newest first.
    pub fn history(&self, key: &ResourceKey, limit: usize) -> Result<Vec<HistoryEntry>> {
        let mut stmt = self.conn.prepare(
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
            let corrupt = |e: String| StoreError::Corrupt {
                what: format!("history of {key}"),
                detail: e,
            };
            out.push(HistoryEntry {
                at: parse_ts(&at)?,
                revision: revision as u64,
                generation: generation as u64,
                action: serde_json::from_value(serde_json::Value::String(action))
                    .map_err(|e| corrupt(e.to_string()))?,
                detail: serde_json::from_str(&detail).map_err(|e| corrupt(e.to_string()))?,
            });
        }
        Ok(out)
    }

    /// Per-key metadata of one SecretStore, ordered by key.
    pub fn key_meta(&self, project: &str, store: &str) -> Result<Vec<KeyMeta>> {
        key_meta(&self.conn, project, store)
    }
}

/// Per-key metadata of one SecretStore, ordered by key (any connection may read it).
pub fn key_meta(conn: &Connection, project: &str, store: &str) -> Result<Vec<KeyMeta>> {
    let mut stmt = conn.prepare(
        "SELECT key, fingerprint, length, updated_at, last_verified_at, last_verified_trigger
         FROM secret_keys WHERE project = ?1 AND store = ?2 ORDER BY key",
    )?;
    let rows = stmt.query_map(params![project, store], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, fingerprint, length, updated, verified, trigger) = row?;
        out.push(KeyMeta {
            key,
            fingerprint,
            length: length as usize,
            updated_at: parse_ts(&updated)?,
            last_verified_at: verified.as_deref().map(parse_ts).transpose()?,
            last_verified_trigger: trigger,
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
            let metadata = serde_json::to_string(&r.metadata).map_err(|e| StoreError::Corrupt {
                what: "metadata".into(),
                detail: e.to_string(),
            })?;
            let spec_json = r.spec.to_json();
            let (sealed, detail) = match &r.spec {
                Spec::SecretStore(s) => (
                    Some(seal(cipher, k, &s.data)?),
                    update_key_meta(tx, k, &s.data, now)?,
                ),
                _ => (None, spec_json.clone()),
            };
            tx.prepare_cached(
                "INSERT INTO resources (project, kind, name, generation, metadata, spec, sealed, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (project, kind, name) DO UPDATE SET generation = excluded.generation,
                   metadata = excluded.metadata, spec = excluded.spec, sealed = excluded.sealed,
                   updated_at = excluded.updated_at",
            )?
            .execute(
                params![
                    k.project,
                    kind,
                    k.name,
                    r.generation as i64,
                    metadata,
                    spec_json.to_string(),
                    sealed,
                    ts(r.created_at),
                    ts(r.updated_at)
                ],
            )?;
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
/// keys and which were added, removed or changed. Unchanged keys keep their `updated_at` and
/// verification record.
fn update_key_meta(
    tx: &Transaction<'_>,
    k: &ResourceKey,
    data: &BTreeMap<String, SecretValue>,
    now: DateTime<Utc>,
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
    let mut fingerprints = BTreeMap::new();
    let (mut added, mut changed) = (Vec::new(), Vec::new());
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
                tx.prepare_cached(
                    "INSERT INTO secret_keys (project, store, key, fingerprint, length, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (project, store, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                       length = excluded.length, updated_at = excluded.updated_at,
                       last_verified_at = NULL, last_verified_trigger = NULL",
                )?
                .execute(
                    params![k.project, k.name, key, fp, value.len() as i64, ts(now)],
                )?;
            }
        }
        fingerprints.insert(key.clone(), fp);
    }
    let removed: Vec<&String> = old.keys().filter(|key| !data.contains_key(*key)).collect();
    for key in &removed {
        tx.prepare_cached(
            "DELETE FROM secret_keys WHERE project = ?1 AND store = ?2 AND key = ?3",
        )?
        .execute(params![k.project, k.name, key])?;
    }
    Ok(serde_json::json!({
        "keys": fingerprints,
        "added": added,
        "removed": removed,
        "changed": changed,
    }))
}

/// Records which keys verified webhook deliveries, and when (newer stamps only).
pub fn record_verified<'a>(
    conn: &Connection,
    stamps: impl Iterator<Item = (&'a str, &'a str, &'a str, &'a str, DateTime<Utc>)>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE secret_keys SET last_verified_at = ?5, last_verified_trigger = ?4
         WHERE project = ?1 AND store = ?2 AND key = ?3
           AND (last_verified_at IS NULL OR last_verified_at < ?5)",
    )?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    for (project, store, key, trigger, at) in stamps {
        if let Err(e) = stmt.execute(params![project, store, key, trigger, ts(at)]) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(())
}

/// Looks up a single meta value (used by tests and `daemon status`).
pub fn meta_value(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::parse_documents;

    fn secret_doc(values: &[(&str, &str)]) -> Vec<crate::domain::manifest::Manifest> {
        let data: String = values
            .iter()
            .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
            .collect();
        let text = format!(
            "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata:\n  name: hooks\n  project: default\nspec:\n  data:\n{data}"
        );
        let (docs, p) = parse_documents("f", &text);
        assert!(p.is_empty(), "{p:?}");
        docs.into_iter().map(|d| d.manifest).collect()
    }

    fn apply(
        store: &mut Store,
        snap: &Snapshot,
        m: &[crate::domain::manifest::Manifest],
    ) -> Snapshot {
        let changes = snap.plan(m, Utc::now());
        let next = snap.apply(&changes);
        store
            .commit(&changes, next.revision, Utc::now())
            .expect("commit");
        next
    }

    #[test]
    fn secrets_round_trip_encrypted_and_history_has_no_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("open");
        let s1 = apply(
            &mut store,
            &Snapshot::default(),
            &secret_doc(&[("old", "plain-old-value")]),
        );
        let s2 = apply(
            &mut store,
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

        let store = Store::open(dir.path()).expect("reopen");
        let loaded = store.load_snapshot().expect("load");
        assert_eq!(loaded.revision, 2);
        let data = &loaded.secret_store("default", "hooks").expect("store").data;
        assert_eq!(data["new"].expose(), "plain-new-value");
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
    }

    #[test]
    fn a_blob_moved_to_another_row_does_not_decrypt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let cipher = store.key.cipher();
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

    #[test]
    fn a_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path()).expect("open"));
        let path = dir.path().join(KEY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Store::open(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
