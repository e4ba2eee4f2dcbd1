//! Pause and drain flags per `(domain, key)`, persisted in SQLite
//! (`domain_activity.sqlite`, the reference schema) in the state directory, and the record of
//! who changed the running service through its control socket (`control_log`).
//!
//! The database lives in a directory the service user owns, and root's offline CLI opens it
//! too: it is never opened through a symbolic link (its own name or its `-wal`/`-shm`
//! companions), SQLite runs in defensive mode with `trusted_schema=OFF` (a planted schema
//! cannot run functions or triggers with side effects), and inspection opens it read-only.

use std::path::{Path, PathBuf};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::domain::Domain;

pub const FILE_NAME: &str = "domain_activity.sqlite";

#[derive(Debug, thiserror::Error)]
#[error("{path}: activity store: {source}")]
pub struct ActivityError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Activity {
    pub domain: String,
    pub key: String,
    pub paused: bool,
    pub draining: bool,
    pub note: Option<String>,
}

impl Activity {
    /// Why a swap of this key is refused, if it is.
    pub fn refusal(&self) -> Option<String> {
        let note = self
            .note
            .as_deref()
            .map(|n| format!(" (note: {n})"))
            .unwrap_or_default();
        if self.paused {
            Some(format!(
                "{}/{} is paused{note}; resume it with `oneiric pause {} {} --resume`",
                self.domain, self.key, self.domain, self.key
            ))
        } else if self.draining {
            Some(format!(
                "{}/{} is draining{note}; clear it with `oneiric drain {} {} --clear`",
                self.domain, self.key, self.domain, self.key
            ))
        } else {
            None
        }
    }
}

/// One change request made through the control socket, allowed or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlRecord {
    pub at_unix: i64,
    pub uid: u32,
    pub pid: Option<i32>,
    /// `reload`, `swap`, `unpin`, `pause`, `drain`.
    pub op: String,
    /// `domain/key`, when the request names one.
    pub target: Option<String>,
    /// The outcome's name (`ok`, `refused`, ...), as the control protocol carries it.
    pub outcome: String,
    pub message: String,
}

/// Rows of `control_log` kept: the newest, a few months of a busy operator's changes.
const CONTROL_LOG_ROWS: i64 = 1000;

/// Opens the database at `path` without following a symbolic link, in defensive mode, with
/// schema-defined functions untrusted.
fn open_hardened(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    // SQLite before 3.31 (RHEL 8 has 3.26) ignores SQLITE_OPEN_NOFOLLOW; the companions are
    // opened by SQLite under names derived from this one.
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!(
                    "{} is a symbolic link; refusing to follow it",
                    Path::new(&p).display()
                )),
            ));
        }
    }
    let conn = Connection::open_with_flags(
        path,
        flags | OpenFlags::SQLITE_OPEN_NOFOLLOW | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    // An unknown pragma is ignored by SQLite older than 3.31, which has no such trust.
    conn.execute_batch("PRAGMA trusted_schema=OFF;")?;
    Ok(conn)
}

pub struct ActivityStore {
    conn: Connection,
    path: PathBuf,
}

impl ActivityStore {
    pub fn open(state_dir: &Path) -> Result<Self, ActivityError> {
        let path = state_dir.join(FILE_NAME);
        let err = |source| ActivityError {
            path: path.clone(),
            source,
        };
        let conn = open_hardened(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(err)?;
        // WAL + synchronous=FULL: a `kill -9` mid-write loses at most the write in flight.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS activity (
                 domain TEXT NOT NULL,
                 key TEXT NOT NULL,
                 paused INTEGER NOT NULL DEFAULT 0,
                 draining INTEGER NOT NULL DEFAULT 0,
                 note TEXT,
                 PRIMARY KEY (domain, key)
             );
             CREATE TABLE IF NOT EXISTS control_log (
                 id INTEGER PRIMARY KEY,
                 at_unix INTEGER NOT NULL,
                 uid INTEGER NOT NULL,
                 pid INTEGER,
                 op TEXT NOT NULL,
                 target TEXT,
                 outcome TEXT NOT NULL,
                 message TEXT NOT NULL
             );",
        )
        .map_err(err)?;
        let store = Self { conn, path };
        store.fix_owner();
        Ok(store)
    }

    /// For inspection: never creates, never writes. `None` when there is no database yet
    /// (nothing was ever paused or drained).
    pub fn open_read_only(state_dir: &Path) -> Result<Option<Self>, ActivityError> {
        let path = state_dir.join(FILE_NAME);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            _ => {}
        }
        let conn = open_hardened(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| {
            ActivityError {
                path: path.clone(),
                source,
            }
        })?;
        Ok(Some(Self { conn, path }))
    }

    /// The database and its WAL files belong to the state directory's owner even when root
    /// (the offline CLI) created them.
    fn fix_owner(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            if let Err(e) = crate::fsutil::match_dir_owner(Path::new(&p)) {
                tracing::warn!(
                    "cannot hand {} to the state directory's owner: {e}",
                    self.path.display()
                );
            }
        }
    }

    fn err(&self, source: rusqlite::Error) -> ActivityError {
        ActivityError {
            path: self.path.clone(),
            source,
        }
    }

    pub fn get(&self, domain: Domain, key: &str) -> Result<Activity, ActivityError> {
        let row = self
            .conn
            .query_row(
                "SELECT paused, draining, note FROM activity WHERE domain = ?1 AND key = ?2",
                params![domain.as_str(), key],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let (paused, draining, note) = row.unwrap_or((0, 0, None));
        Ok(Activity {
            domain: domain.to_string(),
            key: key.to_string(),
            paused: paused != 0,
            draining: draining != 0,
            note,
        })
    }

    pub fn set_paused(
        &mut self,
        domain: Domain,
        key: &str,
        paused: bool,
        note: Option<&str>,
    ) -> Result<Activity, ActivityError> {
        self.upsert(domain, key, "paused", paused, note)
    }

    pub fn set_draining(
        &mut self,
        domain: Domain,
        key: &str,
        draining: bool,
        note: Option<&str>,
    ) -> Result<Activity, ActivityError> {
        self.upsert(domain, key, "draining", draining, note)
    }

    fn upsert(
        &mut self,
        domain: Domain,
        key: &str,
        column: &str,
        on: bool,
        note: Option<&str>,
    ) -> Result<Activity, ActivityError> {
        // `column` is one of two literals above, never input.
        let sql = format!(
            "INSERT INTO activity (domain, key, {column}, note) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(domain, key) DO UPDATE SET {column} = excluded.{column},
                 note = COALESCE(excluded.note, activity.note)"
        );
        let tx = self.conn.transaction().map_err(|e| ActivityError {
            path: self.path.clone(),
            source: e,
        })?;
        tx.execute(&sql, params![domain.as_str(), key, on as i64, note])
            .map_err(|e| ActivityError {
                path: self.path.clone(),
                source: e,
            })?;
        // A row with nothing set and no note carries no information.
        tx.execute(
            "DELETE FROM activity WHERE domain = ?1 AND key = ?2 AND paused = 0 AND draining = 0 AND note IS NULL",
            params![domain.as_str(), key],
        )
        .map_err(|e| ActivityError {
            path: self.path.clone(),
            source: e,
        })?;
        tx.commit().map_err(|e| ActivityError {
            path: self.path.clone(),
            source: e,
        })?;
        self.fix_owner();
        self.get(domain, key)
    }

    /// Sets or clears the pause (`drain == false`) or drain flag; returns the row and the word
    /// that says what happened (`paused`, `resumed`, `draining`, `drain cleared`).
    pub fn set_flag(
        &mut self,
        drain: bool,
        domain: Domain,
        key: &str,
        on: bool,
        note: Option<&str>,
    ) -> Result<(Activity, &'static str), ActivityError> {
        let row = if drain {
            self.set_draining(domain, key, on, note)?
        } else {
            self.set_paused(domain, key, on, note)?
        };
        let word = match (drain, on) {
            (false, true) => "paused",
            (false, false) => "resumed",
            (true, true) => "draining",
            (true, false) => "drain cleared",
        };
        Ok((row, word))
    }

    /// Appends one control request to `control_log`, keeping the newest rows.
    pub fn record_request(&mut self, rec: &ControlRecord) -> Result<(), ActivityError> {
        let path = self.path.clone();
        let err = |source| ActivityError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO control_log (at_unix, uid, pid, op, target, outcome, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                rec.at_unix,
                rec.uid,
                rec.pid,
                rec.op,
                rec.target,
                rec.outcome,
                rec.message
            ],
        )
        .map_err(err)?;
        tx.execute(
            "DELETE FROM control_log WHERE id <= (SELECT MAX(id) FROM control_log) - ?1",
            params![CONTROL_LOG_ROWS],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        self.fix_owner();
        Ok(())
    }

    /// The newest `limit` control requests, newest first.
    pub fn requests(&self, limit: usize) -> Result<Vec<ControlRecord>, ActivityError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at_unix, uid, pid, op, target, outcome, message FROM control_log
                 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(ControlRecord {
                    at_unix: r.get(0)?,
                    uid: r.get(1)?,
                    pid: r.get(2)?,
                    op: r.get(3)?,
                    target: r.get(4)?,
                    outcome: r.get(5)?,
                    message: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    pub fn all(&self) -> Result<Vec<Activity>, ActivityError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT domain, key, paused, draining, note FROM activity ORDER BY domain, key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Activity {
                    domain: r.get(0)?,
                    key: r.get(1)?,
                    paused: r.get::<_, i64>(2)? != 0,
                    draining: r.get::<_, i64>(3)? != 0,
                    note: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_drain_persist_across_reopen() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = ActivityStore::open(d.path()).unwrap();
            s.set_paused(Domain::Adapter, "cache", true, Some("maintenance"))
                .unwrap();
            s.set_draining(Domain::Service, "api", true, None).unwrap();
        }
        let mut s = ActivityStore::open(d.path()).unwrap();
        let a = s.get(Domain::Adapter, "cache").unwrap();
        assert!(a.paused && !a.draining);
        assert!(a.refusal().unwrap().contains("paused"));
        assert_eq!(s.all().unwrap().len(), 2);
        s.set_paused(Domain::Adapter, "cache", false, None).unwrap();
        assert!(s.get(Domain::Adapter, "cache").unwrap().refusal().is_none());
    }

    fn record(i: i64) -> ControlRecord {
        ControlRecord {
            at_unix: 1_700_000_000 + i,
            uid: 1000,
            pid: Some(42),
            op: "swap".into(),
            target: Some("adapter/cache".into()),
            outcome: "refused".into(),
            message: format!("request {i}"),
        }
    }

    #[test]
    fn the_control_log_keeps_the_newest_requests() {
        let d = tempfile::tempdir().unwrap();
        let mut s = ActivityStore::open(d.path()).unwrap();
        for i in 0..(CONTROL_LOG_ROWS + 5) {
            s.record_request(&record(i)).unwrap();
        }
        let all = s.requests(usize::MAX >> 1).unwrap();
        assert_eq!(all.len() as i64, CONTROL_LOG_ROWS);
        assert_eq!(all[0], record(CONTROL_LOG_ROWS + 4));
        assert_eq!(all.last().unwrap(), &record(5));
    }

    #[test]
    fn inspection_reads_without_creating_or_writing() {
        let d = tempfile::tempdir().unwrap();
        assert!(ActivityStore::open_read_only(d.path()).unwrap().is_none());
        assert!(
            !d.path().join(FILE_NAME).exists(),
            "read-only open created the file"
        );
        {
            let mut s = ActivityStore::open(d.path()).unwrap();
            s.set_paused(Domain::Adapter, "cache", true, None).unwrap();
        }
        let mut ro = ActivityStore::open_read_only(d.path()).unwrap().unwrap();
        assert!(ro.get(Domain::Adapter, "cache").unwrap().paused);
        assert!(ro.set_paused(Domain::Adapter, "x", true, None).is_err());
    }

    #[test]
    fn a_planted_link_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("elsewhere.sqlite");
        std::fs::write(&victim, b"").unwrap();
        let state = d.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::os::unix::fs::symlink(&victim, state.join(FILE_NAME)).unwrap();
        let e = ActivityStore::open(&state)
            .err()
            .expect("opened through a link");
        assert!(e.to_string().contains(FILE_NAME), "{e}");
        assert!(ActivityStore::open_read_only(&state).is_err());
        assert_eq!(
            std::fs::metadata(&victim).unwrap().len(),
            0,
            "victim written"
        );
        // The write-ahead log too: SQLite names it after the database.
        std::fs::remove_file(state.join(FILE_NAME)).unwrap();
        std::os::unix::fs::symlink(&victim, state.join(format!("{FILE_NAME}-wal"))).unwrap();
        let e = ActivityStore::open(&state)
            .err()
            .expect("opened with a linked WAL");
        assert!(e.to_string().contains("-wal is a symbolic link"), "{e}");
        assert_eq!(
            std::fs::metadata(&victim).unwrap().len(),
            0,
            "victim written"
        );
    }

    #[test]
    fn the_schema_cannot_run_untrusted_functions() {
        let d = tempfile::tempdir().unwrap();
        drop(ActivityStore::open(d.path()).unwrap());
        let s = ActivityStore::open(d.path()).unwrap();
        let defensive = s
            .conn
            .db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE)
            .unwrap();
        assert!(defensive);
        let trusted: i64 = s
            .conn
            .query_row("PRAGMA trusted_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(trusted, 0);
    }
}
