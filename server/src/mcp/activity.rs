//! Activity records of proxied MCP requests, written off the hot path: `record` puts the
//! record on a bounded channel and returns at once; one task wakes every `FLUSH_EVERY`, takes
//! what has queued up and writes it in one transaction of multi-row inserts. Waking per record
//! would cost a thread wake-up and an SQL statement per proxied request (measured: about a
//! tenth of the gateway's CPU at 20k requests/s). A full queue drops the record and counts it.
//! The same batch goes to the `activity-YYYY-MM-DD.jsonl` log and to live-feed subscribers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use shared::live::LiveMessage;

use crate::db::{self, Db, servers::ActivityRow};
use crate::filelog::FileLog;
use crate::live::LiveHub;
use crate::metrics::Metrics;

const QUEUE: usize = 65_536;
const BATCH: usize = 8_192;
const FLUSH_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct ActivitySink {
    tx: mpsc::Sender<ActivityRow>,
    dropped: Arc<AtomicU64>,
}

impl ActivitySink {
    pub fn spawn(
        db: Db,
        metrics: Arc<Metrics>,
        live: LiveHub,
        file: Option<FileLog>,
    ) -> ActivitySink {
        let (tx, mut rx) = mpsc::channel::<ActivityRow>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                // Let more records arrive, then write them together.
                tokio::time::sleep(FLUSH_EVERY).await;
                while batch.len() < BATCH && rx.try_recv().map(|r| batch.push(r)).is_ok() {}
                // In the writer, off the request path.
                batch.iter_mut().for_each(nul_free);
                metrics.observe(&batch);
                if live.wanted() {
                    for row in &batch {
                        live.publish(|| LiveMessage::Activity {
                            record: crate::live::activity(row),
                        });
                    }
                }
                if let Some(file) = &file {
                    let lines = batch
                        .iter()
                        .filter_map(|row| serde_json::to_string(row).ok())
                        .collect();
                    file.append(lines, db::now()).await;
                }
                if let Err(e) = write_batch(&db, &batch).await {
                    tracing::warn!(error = %e, records = batch.len(), "could not store MCP activity");
                    if db.pool.is_closed() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                batch.clear();
            }
        });
        ActivitySink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn record(&self, row: ActivityRow) {
        if self.tx.try_send(row).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A NUL, which Postgres text cannot hold, becomes U+FFFD: one record's text must never fail
/// the statement that carries a whole batch of everyone's records. (The MCP reading already
/// keeps control characters out of every field a client sets; this is the sink's own rule.)
fn nul_free(row: &mut ActivityRow) {
    let fields = [
        row.username.as_mut(),
        Some(&mut row.server),
        Some(&mut row.method),
        row.tool.as_mut(),
        Some(&mut row.status),
        row.client_name.as_mut(),
    ];
    for text in fields.into_iter().flatten() {
        if text.contains('\0') {
            *text = text.replace('\0', "\u{fffd}");
        }
    }
}

async fn write_batch(db: &Db, batch: &[ActivityRow]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    db::servers::insert_activity(&mut tx, db.backend, batch).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_any_text_of_a_record_becomes_a_replacement_character() {
        let mut row = ActivityRow {
            username: Some("a\0".into()),
            server: "\0s".into(),
            method: "m".into(),
            tool: Some("t\0\0".into()),
            status: "ok".into(),
            client_name: Some("c\0lient".into()),
            ..Default::default()
        };
        nul_free(&mut row);
        assert_eq!(row.username.as_deref(), Some("a\u{fffd}"));
        assert_eq!(row.server, "\u{fffd}s");
        assert_eq!(row.method, "m");
        assert_eq!(row.tool.as_deref(), Some("t\u{fffd}\u{fffd}"));
        assert_eq!(row.client_name.as_deref(), Some("c\u{fffd}lient"));
    }
}
