//! SQLite schema and queries. SQLite (rather than redb or JSON files) because
//! hull is daemonless: several `hull` processes may pull, list and run at the
//! same time, and SQLite gives multi-process transactions with WAL readers
//! that never block, plus a busy timeout for writers, out of the box.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::spec::ImageConfig;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images(
    id TEXT PRIMARY KEY,              -- config digest, as docker and podman
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    config BLOB NOT NULL,             -- raw config JSON (also under blobs/)
    layers TEXT NOT NULL,             -- JSON [LayerRecord], bottom first
    size INTEGER NOT NULL,
    created INTEGER NOT NULL          -- unix seconds when stored
);
CREATE TABLE IF NOT EXISTS names(
    name TEXT PRIMARY KEY,            -- registry/repo:tag or registry/repo@digest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS snapshots(
    chain_id TEXT PRIMARY KEY,
    parent TEXT,
    diff_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rootfs(
    container_id TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    chains TEXT NOT NULL,             -- JSON [chain id], keeps snapshots alive
    mode TEXT NOT NULL                -- overlay | copy
);
";

/// One layer of a stored image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the blob as distributed (compressed).
    pub blob: Digest,
    pub media_type: String,
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Key of the snapshot holding this layer unpacked.
    pub chain_id: Digest,
}

/// A stored image.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    /// Image id: the digest of its config.
    pub id: Digest,
    /// Names (`registry/repo:tag` and `registry/repo@digest`), sorted.
    pub names: Vec<String>,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config: ImageConfig,
    pub layers: Vec<LayerRecord>,
    /// Sum of the distributed layer sizes.
    pub size: u64,
    /// Unix seconds when the image was stored.
    pub created: i64,
}

impl ImageRecord {
    /// Tag names only (`registry/repo:tag`).
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .map(String::as_str)
            .filter(|n| !n.contains('@'))
    }
}

/// What a pull or load hands to the store once every blob is in place.
pub(crate) struct NewImage {
    pub id: Digest,
    pub names: Vec<String>,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub config_raw: Vec<u8>,
    pub layers: Vec<LayerRecord>,
}

pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    let db = Connection::open(path)?;
    db.busy_timeout(Duration::from_secs(60))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    // WAL + NORMAL: commits are not fsynced, only checkpoints are. The database cannot be
    // corrupted by a crash; a power loss may roll back the last commits (see
    // ARCHITECTURE.md, "Metadata durability", for why that is acceptable per table). Image
    // commits and removals ask for FULL themselves.
    db.pragma_update(None, "synchronous", "NORMAL")?;
    // hull opens and closes the store once or twice per command: by default the last
    // connection to close checkpoints the WAL into the database and deletes it (three or four
    // fsyncs per close). Left to the auto-checkpoint (every 1000 pages), the WAL persists
    // between commands instead.
    db.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    db.pragma_update(None, "foreign_keys", "ON")?;
    db.execute_batch(SCHEMA)?;
    Ok(db)
}

/// Runs `f` with `synchronous=FULL`: a pull or an `rmi` happens rarely and its record should
/// survive a power loss like the blobs it names (which are fsynced); the WAL fsync of a FULL
/// commit also makes every earlier NORMAL commit durable.
fn full<T>(
    db: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    db.pragma_update(None, "synchronous", "FULL")?;
    let r = f(db);
    db.pragma_update(None, "synchronous", "NORMAL")?;
    r
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(super) fn insert_image(db: &mut Connection, img: &NewImage) -> Result<(), StoreError> {
    let layers = serde_json::to_string(&img.layers).map_err(|source| StoreError::Corrupt {
        what: img.id.to_string(),
        source,
    })?;
    let size: u64 = img.layers.iter().map(|l| l.size).sum();
    full(db, |db| insert_image_tx(db, img, &layers, size))
}

fn insert_image_tx(
    db: &mut Connection,
    img: &NewImage,
    layers: &str,
    size: u64,
) -> Result<(), StoreError> {
    let tx = db.transaction()?;
    tx.execute(
        "INSERT INTO images(id, manifest_digest, manifest_media_type, config, layers, size, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(id) DO UPDATE SET manifest_digest = ?2, manifest_media_type = ?3, layers = ?5",
        params![
            img.id.to_string(),
            img.manifest_digest.to_string(),
            img.manifest_media_type,
            img.config_raw,
            layers,
            size as i64,
            now()
        ],
    )?;
    for name in &img.names {
        // A tag moves to the new image; the old one stays, untagged (docker).
        tx.execute(
            "INSERT OR REPLACE INTO names(name, image_id) VALUES (?1, ?2)",
            params![name, img.id.to_string()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn record_snapshot(
    db: &Connection,
    chain: &Digest,
    parent: Option<&Digest>,
    diff_id: &Digest,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT OR IGNORE INTO snapshots(chain_id, parent, diff_id) VALUES (?1, ?2, ?3)",
        params![
            chain.to_string(),
            parent.map(|p| p.to_string()),
            diff_id.to_string()
        ],
    )?;
    Ok(())
}

fn parse_digest(what: &str, s: String) -> Result<Digest, StoreError> {
    s.parse()
        .map_err(|_| StoreError::NotFound(format!("{what}: bad digest {s:?}")))
}

fn load_image(db: &Connection, id: &str) -> Result<ImageRecord, StoreError> {
    let (manifest_digest, manifest_media_type, config, layers, size, created) = db
        .query_row(
            "SELECT manifest_digest, manifest_media_type, config, layers, size, created
             FROM images WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    let corrupt = |source| StoreError::Corrupt {
        what: id.to_string(),
        source,
    };
    let mut stmt = db.prepare_cached("SELECT name FROM names WHERE image_id = ?1 ORDER BY name")?;
    let names = stmt
        .query_map([id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ImageRecord {
        id: parse_digest(id, id.to_string())?,
        names,
        manifest_digest: parse_digest(id, manifest_digest)?,
        manifest_media_type,
        config: serde_json::from_slice(&config).map_err(corrupt)?,
        layers: serde_json::from_str(&layers).map_err(corrupt)?,
        size: size as u64,
        created,
    })
}

pub(super) fn list_images(db: &Connection) -> Result<Vec<ImageRecord>, StoreError> {
    let ids = db
        .prepare("SELECT id FROM images ORDER BY created DESC, id")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    ids.iter().map(|id| load_image(db, id)).collect()
}

/// How a lookup matched: through one of the image's names, or its id.
pub(super) enum Matched {
    Name(String),
    Id,
}

pub(super) fn resolve(db: &Connection, s: &str) -> Result<(String, Matched), StoreError> {
    if let Ok(r) = s.parse::<Reference>() {
        let name = r.to_string();
        let hit: Option<String> = db
            .query_row("SELECT image_id FROM names WHERE name = ?1", [&name], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = hit {
            return Ok((id, Matched::Name(name)));
        }
    }
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() >= 3 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let ids = db
            .prepare("SELECT id FROM images WHERE substr(id, 8, ?1) = ?2")?
            .query_map(params![hex.len() as i64, hex.to_ascii_lowercase()], |r| {
                r.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        match ids.as_slice() {
            [one] => return Ok((one.clone(), Matched::Id)),
            [] => {}
            _ => return Err(StoreError::Ambiguous(s.to_string())),
        }
    }
    Err(StoreError::NotFound(s.to_string()))
}

pub(super) fn lookup(db: &Connection, s: &str) -> Result<ImageRecord, StoreError> {
    let (id, _) = resolve(db, s)?;
    load_image(db, &id)
}

pub(super) fn containers_using(db: &Connection, image_id: &str) -> Result<Vec<String>, StoreError> {
    let v = db
        .prepare("SELECT container_id FROM rootfs WHERE image_id = ?1 ORDER BY container_id")?
        .query_map([image_id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Untags `name` or deletes the image; returns (untagged names, deleted id).
pub(super) fn remove(
    db: &mut Connection,
    s: &str,
    force: bool,
) -> Result<(Vec<String>, Option<String>), StoreError> {
    full(db, |db| remove_tx(db, s, force))
}

fn remove_tx(
    db: &mut Connection,
    s: &str,
    force: bool,
) -> Result<(Vec<String>, Option<String>), StoreError> {
    let (id, matched) = resolve(db, s)?;
    let img = load_image(db, &id)?;
    let tags: Vec<&str> = img.tags().collect();
    let tx = db.transaction()?;
    if let Matched::Name(name) = &matched {
        let others = tags.iter().filter(|t| *t != name).count();
        if others > 0 || name.contains('@') && !tags.is_empty() {
            tx.execute("DELETE FROM names WHERE name = ?1", [name])?;
            tx.commit()?;
            return Ok((vec![name.clone()], None));
        }
    } else if tags.len() > 1 && !force {
        return Err(StoreError::MultipleNames(s.to_string()));
    }
    let users = containers_using(&tx, &id)?;
    if !users.is_empty() && !force {
        return Err(StoreError::InUse {
            image: s.to_string(),
            containers: users,
        });
    }
    tx.execute("DELETE FROM names WHERE image_id = ?1", [&id])?;
    tx.execute("DELETE FROM images WHERE id = ?1", [&id])?;
    tx.commit()?;
    Ok((img.names, Some(id)))
}

/// Points `name` at image `id` (a tag moves from any other image).
pub(super) fn add_name(db: &mut Connection, id: &str, name: &str) -> Result<(), StoreError> {
    full(db, |db| {
        db.execute(
            "INSERT OR REPLACE INTO names(name, image_id) VALUES (?1, ?2)",
            params![name, id],
        )?;
        Ok(())
    })
}

/// Deletes image `id` and its names, unless a container rootfs uses it; whether it went.
pub(super) fn delete_unused(db: &mut Connection, id: &str) -> Result<bool, StoreError> {
    full(db, |db| {
        let tx = db.transaction()?;
        if !containers_using(&tx, id)?.is_empty() {
            return Ok(false);
        }
        tx.execute("DELETE FROM names WHERE image_id = ?1", [id])?;
        tx.execute("DELETE FROM images WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(true)
    })
}
