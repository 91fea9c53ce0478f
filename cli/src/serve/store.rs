//! The inventory store: one SQLite file by default (`sqlite:PATH`), opened twice by the service
//! (one writer connection owned by the writer thread, one reader connection for the API and the
//! page; WAL mode lets them work side by side).
//!
//! - Migrations are versioned ([`MIGRATIONS`], recorded in `schema_migrations`); a store written by
//!   a newer version is refused rather than misread.
//! - Every write is one transaction: a batch (or a group of batches) is either wholly in the
//!   inventory, with its id recorded for idempotence, or not at all. `synchronous=NORMAL` in WAL
//!   mode: a committed batch survives the process crashing (an OS crash or power loss may lose the
//!   last commits; `--sync full` makes every commit durable).
//! - Bounded: batch ids are kept for the dedup window only, endpoints unseen for the retention are
//!   deleted, and at most `max_endpoints` endpoints are kept (new ones past it are counted, not
//!   stored).

use super::ingest::Batch;
use super::merge;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Versioned schema. Append only: a released migration is never edited.
pub const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE batches (
        proxy TEXT NOT NULL,
        batch_key TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        endpoints INTEGER NOT NULL,
        PRIMARY KEY (proxy, batch_key));
     CREATE INDEX batches_received ON batches (received_ms);
     CREATE TABLE endpoints (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        method TEXT NOT NULL,
        template_key TEXT NOT NULL,
        api_type TEXT NOT NULL,
        operation TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        record TEXT NOT NULL,
        UNIQUE (service, method, template_key, api_type, operation));
     CREATE INDEX endpoints_last_seen ON endpoints (last_seen_ms);
     CREATE TABLE specs (
        service TEXT PRIMARY KEY,
        document TEXT NOT NULL,
        uploaded_ms INTEGER NOT NULL);",
)];

/// How a batch fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Merged into the inventory.
    New,
    /// Already received from this proxy (a retry): nothing changed.
    Duplicate,
}

/// One batch to write, with the proxy that sent it (the token's name).
pub struct Item {
    pub token_name: String,
    pub batch: Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Normal,
    Full,
}

type Key = (String, String, String, String, String);

/// Endpoint records with their ids.
pub type Records = Vec<(i64, Map<String, Value>)>;

pub struct Store {
    conn: Connection,
    /// The writer's copy of the records it wrote or read (at most `cache_max`): a batch merges
    /// into memory instead of reading and parsing each record back. Only the writer connection
    /// writes records, so the copy stays exact; a sweep clears it.
    cache: HashMap<Key, (i64, merge::Record)>,
    cache_max: usize,
    /// Endpoints stored, as the writer knows it (None: count on the next write).
    endpoint_count: Option<usize>,
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub endpoints: usize,
    pub batch_ids: usize,
}

fn err(e: rusqlite::Error) -> String {
    format!("store: {e}")
}

/// `sqlite:PATH` (or a bare path) → the file; `postgres://` is named but not built in.
pub fn sqlite_path(url: &str) -> Result<String, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(
            "PostgreSQL stores are not supported by this build yet; use sqlite:PATH".to_string(),
        );
    }
    let path = url.strip_prefix("sqlite:").unwrap_or(url);
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() {
        return Err("the store URL names no file (sqlite:PATH)".into());
    }
    Ok(path.to_string())
}

impl Store {
    pub fn open(url: &str, sync: Sync) -> Result<Store, String> {
        let path = sqlite_path(url)?;
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        let level = match sync {
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", level)
            .map_err(err)?;
        let mut store = Store {
            conn,
            cache: HashMap::new(),
            cache_max: 0,
            endpoint_count: None,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Keeps up to `max` records in the writer's memory (the writer's store only).
    pub fn with_cache(mut self, max: usize) -> Store {
        self.cache_max = max;
        self
    }

    /// Applies the migrations this store lacks, each in its own transaction.
    fn migrate(&mut self) -> Result<(), String> {
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
            )
            .map_err(err)?;
        let current: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if current > latest {
            return Err(format!(
                "store: schema version {current} is newer than this binary's {latest}"
            ));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            let tx = self.conn.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
                params![version, super::now_ms()],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64, String> {
        self.conn
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .map_err(err)
    }

    /// Writes a group of batches in one transaction. Each batch is new or a duplicate; endpoints
    /// past `max_endpoints` are not stored and are counted in the second value. Entries of the
    /// group that fall on the same endpoint are merged in memory first and written once.
    pub fn ingest(
        &mut self,
        items: &[Item],
        now_ms: u64,
        max_endpoints: usize,
    ) -> Result<(Vec<Stored>, u64), String> {
        let tx = self.conn.transaction().map_err(err)?;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut refused = 0u64;
        // The records this group changes: (id when already stored, merged record).
        let mut touched: HashMap<Key, (Option<i64>, merge::Record)> = HashMap::new();
        // First-touch order: new endpoints get their ids in the order they arrived.
        let mut order: Vec<Key> = Vec::new();
        let total_after;
        {
            let stored = match self.endpoint_count {
                Some(n) => n,
                None => tx
                    .query_row("SELECT COUNT(*) FROM endpoints", [], |r| r.get::<_, i64>(0))
                    .map_err(err)?
                    .try_into()
                    .unwrap_or(0),
            };
            let mut total = stored;
            let mut mark = tx
                .prepare_cached(
                    "INSERT INTO batches (proxy, batch_key, received_ms, endpoints)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )
                .map_err(err)?;
            let mut find = tx
                .prepare_cached(
                    "SELECT id, record FROM endpoints WHERE service = ?1 AND method = ?2
                     AND template_key = ?3 AND api_type = ?4 AND operation = ?5",
                )
                .map_err(err)?;
            for item in items {
                let b = &item.batch;
                let fresh = mark
                    .execute(params![
                        item.token_name,
                        b.key(),
                        now_ms as i64,
                        b.endpoints.len() as i64
                    ])
                    .map_err(err)?;
                if fresh == 0 {
                    outcomes.push(Stored::Duplicate);
                    continue;
                }
                let proxy = b.proxy_name(&item.token_name);
                for e in &b.endpoints {
                    let k = merge::key(e);
                    if let Some((_, r)) = touched.get_mut(&k) {
                        r.merge(e, &proxy);
                        continue;
                    }
                    // Taken out of the cache (no copy); put back after the commit. A failed
                    // group leaves these records out of the cache: they are read again next time.
                    let known = match self.cache.remove(&k) {
                        Some(hit) => Some(hit),
                        None => find
                            .query_row(params![k.0, k.1, k.2, k.3, k.4], |r| {
                                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                            })
                            .optional()
                            .map_err(err)?
                            .map(|(id, text)| {
                                let m: Map<String, Value> =
                                    serde_json::from_str(&text).unwrap_or_default();
                                (id, merge::Record::from_json(&m))
                            }),
                    };
                    match known {
                        Some((id, mut r)) => {
                            r.merge(e, &proxy);
                            order.push(k.clone());
                            touched.insert(k, (Some(id), r));
                        }
                        None if total >= max_endpoints => refused += 1,
                        None => {
                            order.push(k.clone());
                            touched.insert(k, (None, merge::Record::new(e, &proxy)));
                            total += 1;
                        }
                    }
                }
                outcomes.push(Stored::New);
            }
            let mut update = tx
                .prepare_cached(
                    "UPDATE endpoints SET first_seen_ms = ?2, last_seen_ms = ?3, record = ?4
                     WHERE id = ?1",
                )
                .map_err(err)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO endpoints (service, method, template_key, api_type, operation,
                     first_seen_ms, last_seen_ms, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     RETURNING id",
                )
                .map_err(err)?;
            total_after = total;
            for k in &order {
                let Some((id, r)) = touched.get_mut(k) else {
                    continue;
                };
                let first = i64::try_from(r.first_seen_ms()).unwrap_or(i64::MAX);
                let last = i64::try_from(r.last_seen_ms()).unwrap_or(i64::MAX);
                let text = serde_json::to_string(&r.to_json()).unwrap_or_default();
                match id {
                    Some(id) => {
                        update
                            .execute(params![*id, first, last, text])
                            .map_err(err)?;
                    }
                    None => {
                        let new_id: i64 = insert
                            .query_row(params![k.0, k.1, k.2, k.3, k.4, first, last, text], |r| {
                                r.get(0)
                            })
                            .map_err(err)?;
                        *id = Some(new_id);
                    }
                }
            }
        }
        tx.commit().map_err(err)?;
        self.endpoint_count = Some(total_after);
        // Only what is committed enters the cache.
        for (k, (id, m)) in touched {
            if let Some(id) = id {
                if self.cache.len() < self.cache_max || self.cache.contains_key(&k) {
                    self.cache.insert(k, (id, m));
                }
            }
        }
        Ok((outcomes, refused))
    }

    /// Deletes endpoints unseen since `endpoints_before` and batch ids older than `batches_before`.
    pub fn sweep(&mut self, endpoints_before: u64, batches_before: u64) -> Result<Swept, String> {
        self.cache.clear();
        self.endpoint_count = None;
        let tx = self.conn.transaction().map_err(err)?;
        let endpoints = tx
            .execute(
                "DELETE FROM endpoints WHERE last_seen_ms < ?1",
                params![endpoints_before as i64],
            )
            .map_err(err)?;
        let batch_ids = tx
            .execute(
                "DELETE FROM batches WHERE received_ms < ?1",
                params![batches_before as i64],
            )
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Swept {
            endpoints,
            batch_ids,
        })
    }

    /// Every endpoint record, with its id, ordered by service, path and method.
    pub fn endpoints(&self) -> Result<Records, String> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, record FROM endpoints ORDER BY service, template_key, method, id",
            )
            .map_err(err)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, text) = row.map_err(err)?;
            let m: Map<String, Value> = serde_json::from_str(&text).unwrap_or_default();
            out.push((id, m));
        }
        Ok(out)
    }

    /// Endpoints stored, without a query when the writer knows it.
    pub fn endpoint_count(&self) -> Result<u64, String> {
        match self.endpoint_count {
            Some(n) => Ok(n as u64),
            None => self.counts().map(|(e, _)| e),
        }
    }

    pub fn counts(&self) -> Result<(u64, u64), String> {
        let e: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM endpoints", [], |r| r.get(0))
            .map_err(err)?;
        let b: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0))
            .map_err(err)?;
        Ok((e.try_into().unwrap_or(0), b.try_into().unwrap_or(0)))
    }

    pub fn put_spec(&mut self, service: &str, document: &str, now_ms: u64) -> Result<(), String> {
        self.conn
            .execute(
                "INSERT INTO specs (service, document, uploaded_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (service) DO UPDATE SET document = ?2, uploaded_ms = ?3",
                params![service, document, now_ms as i64],
            )
            .map_err(err)?;
        Ok(())
    }

    pub fn specs(&self) -> Result<Vec<(String, String)>, String> {
        let mut st = self
            .conn
            .prepare_cached("SELECT service, document FROM specs ORDER BY service")
            .map_err(err)?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiguard::discovery::event::Source;
    use serde_json::json;

    fn batch(worker: &str, start: u64, paths: &[&str]) -> Batch {
        Batch {
            source: Source {
                plugin: "apiguard".into(),
                worker: worker.into(),
                node: None,
            },
            window_start_ms: start,
            window_end_ms: start + 5000,
            part_index: 0,
            part_count: 1,
            endpoints: paths
                .iter()
                .map(|p| {
                    json!({"host": "h", "method": "GET", "path_template": p,
                    "template_source": "inferred", "api_type": "rest", "operation": null,
                    "count": 1, "first_seen_ms": start, "last_seen_ms": start + 1,
                    "status": {"2xx": 1}, "declaration": "unknown"})
                })
                .collect(),
        }
    }

    #[test]
    fn batches_merge_once_and_retention_sweeps() {
        let dir = std::env::temp_dir().join(format!("apiguard-store-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let url = format!("sqlite:{}", dir.display());
        let mut s = Store::open(&url, Sync::Normal).unwrap().with_cache(100);
        assert_eq!(s.schema_version().unwrap(), 1);
        let item = |w: &str, t: u64, p: &[&str]| Item {
            token_name: "p1".into(),
            batch: batch(w, t, p),
        };
        let (o, _) = s
            .ingest(
                &[
                    item("1", 1000, &["/a", "/b/{id}"]),
                    item("1", 1000, &["/a"]),
                ],
                10,
                100,
            )
            .unwrap();
        assert_eq!(o, vec![Stored::New, Stored::Duplicate]);
        let (o, refused) = s.ingest(&[item("2", 1000, &["/a", "/c"])], 20, 2).unwrap();
        assert_eq!((o, refused), (vec![Stored::New], 1));
        let all = s.endpoints().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1["count"], 2);
        drop(s);
        // Reopened: the same data, no migration applied twice.
        let mut s = Store::open(&url, Sync::Normal).unwrap();
        assert_eq!(s.counts().unwrap(), (2, 2));
        let swept = s.sweep(1500, 15).unwrap();
        assert_eq!(
            swept,
            Swept {
                endpoints: 2,
                batch_ids: 1
            }
        );
        assert!(sqlite_path("postgres://x").is_err());
        let _ = std::fs::remove_file(&dir);
    }
}
