//! Durable JSONL logs: `activity-YYYY-MM-DD.jsonl`, `security-…` and `audit-…` in `LOG_DIR`,
//! one file per UTC day, files older than `LOG_RETENTION_DAYS` removed.
//!
//! Writers hand whole batches of lines to `append`, which runs on the blocking pool (the
//! callers are background tasks, never the request path).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// UTC calendar date of a Unix time (Howard Hinnant's `civil_from_days`).
pub fn civil_date(unix_secs: i64) -> (i64, u32, u32) {
    let days = unix_secs.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn date_string(unix_secs: i64) -> String {
    let (y, m, d) = civil_date(unix_secs);
    format!("{y:04}-{m:02}-{d:02}")
}

struct Open {
    date: String,
    file: std::fs::File,
}

/// One kind of log (`activity`, `security`, `audit`).
#[derive(Clone)]
pub struct FileLog {
    dir: PathBuf,
    kind: &'static str,
    /// Shared with the live settings (`LOG_RETENTION_DAYS`, editable).
    retention_days: Arc<AtomicU32>,
    open: Arc<Mutex<Option<Open>>>,
}

impl FileLog {
    pub fn new(dir: &Path, kind: &'static str, retention_days: Arc<AtomicU32>) -> FileLog {
        FileLog {
            dir: dir.to_path_buf(),
            kind,
            retention_days,
            open: Arc::default(),
        }
    }

    fn path(&self, date: &str) -> PathBuf {
        self.dir.join(format!("{}-{date}.jsonl", self.kind))
    }

    /// Appends lines stamped at `now` (Unix seconds) to that day's file, rotating (and pruning
    /// old files) when the day changed.
    pub fn append_blocking(&self, lines: &[String], now: i64) -> std::io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let date = date_string(now);
        let mut open = self
            .open
            .lock()
            .map_err(|_| std::io::Error::other("log lock poisoned"))?;
        if open.as_ref().is_none_or(|o| o.date != date) {
            crate::files::private_dir(&self.dir)?;
            let file = crate::files::private_file()
                .create(true)
                .append(true)
                .open(self.path(&date))?;
            *open = Some(Open { date, file });
            self.prune_blocking(now);
        }
        let Some(o) = open.as_mut() else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        o.file.write_all(&buf)
    }

    /// Off the async runtime.
    pub async fn append(&self, lines: Vec<String>, now: i64) {
        let log = self.clone();
        let result = tokio::task::spawn_blocking(move || log.append_blocking(&lines, now)).await;
        match result {
            Ok(Err(e)) => {
                tracing::warn!(error = %e, kind = self.kind, "could not write the JSONL log")
            }
            Err(e) => tracing::warn!(error = %e, kind = self.kind, "JSONL log task failed"),
            Ok(Ok(())) => {}
        }
    }

    /// Removes this kind's files older than the retention.
    pub fn prune_blocking(&self, now: i64) {
        let days = self.retention_days.load(Ordering::Relaxed);
        let oldest = date_string(now - i64::from(days) * 86_400);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let prefix = format!("{}-", self.kind);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(date) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".jsonl"))
            else {
                continue;
            };
            // ISO dates compare as strings.
            if date.len() == 10
                && date < oldest.as_str()
                && let Err(e) = std::fs::remove_file(entry.path())
            {
                tracing::warn!(error = %e, file = %name, "could not remove an old log file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_string(0), "1970-01-01");
        assert_eq!(date_string(951_782_400), "2000-02-29");
        assert_eq!(date_string(1_795_824_000), "2026-11-28");
        assert_eq!(date_string(1_795_824_000 - 1), "2026-11-27");
    }

    #[test]
    fn rotates_by_day_and_prunes_past_retention() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::new(dir.path(), "activity", Arc::new(AtomicU32::new(30)));
        let day = 86_400;
        let t0 = 1_795_824_000; // 2026-11-28
        // An old file that retention must remove, and another kind's file it must not touch.
        std::fs::write(dir.path().join("activity-2026-10-01.jsonl"), "{}\n").unwrap();
        std::fs::write(dir.path().join("security-2026-10-01.jsonl"), "{}\n").unwrap();
        log.append_blocking(&["{\"a\":1}".into()], t0).unwrap();
        log.append_blocking(&["{\"a\":2}".into()], t0 + 60).unwrap();
        log.append_blocking(&["{\"a\":3}".into()], t0 + day)
            .unwrap();
        let first = std::fs::read_to_string(dir.path().join("activity-2026-11-28.jsonl")).unwrap();
        assert_eq!(first, "{\"a\":1}\n{\"a\":2}\n");
        let second = std::fs::read_to_string(dir.path().join("activity-2026-11-29.jsonl")).unwrap();
        assert_eq!(second, "{\"a\":3}\n");
        assert!(
            !dir.path().join("activity-2026-10-01.jsonl").exists(),
            "pruned"
        );
        assert!(
            dir.path().join("security-2026-10-01.jsonl").exists(),
            "other kinds untouched"
        );
    }
}
