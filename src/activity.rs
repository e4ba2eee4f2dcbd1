//! Pause and drain flags per `(domain, key)`, persisted in SQLite
//! (`domain_activity.sqlite`, the reference schema) in the state directory.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
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
        let conn = Connection::open(&path).map_err(err)?;
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
             );",
        )
        .map_err(err)?;
        let store = Self { conn, path };
        store.fix_owner();
        Ok(store)
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
}
