//! One backend GET stream per client session, shared by all of the client's GET streams on that
//! session. Many servers allow one GET stream per session (the Python SDK answers a second one
//! with 409), and a client that reconnects before the gateway noticed its old stream was gone
//! would otherwise be refused. MCP sends each server message on exactly one of a session's
//! streams, so each event goes to one client stream: the newest one still open.
//! A client GET that resumes (`Last-Event-ID`) gets a backend stream of its own instead.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::mcp::backend::{BackendResponse, Target};
use crate::mcp::sse;

/// Events queued per client stream before the backend stream waits for that client.
const SUBSCRIBER_QUEUE: usize = 16;
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);
/// A client stream whose queue stays full this long is dropped, so one half-dead connection
/// cannot hold up the session's other streams.
const STALLED: std::time::Duration = std::time::Duration::from_secs(5);

pub struct StreamHub {
    subscribers: Mutex<Vec<mpsc::Sender<Bytes>>>,
    ended: AtomicBool,
}

impl StreamHub {
    /// A new client stream on this hub; `None` once the backend stream has ended.
    pub fn subscribe(&self) -> Option<mpsc::Receiver<Bytes>> {
        let mut subscribers = self.subscribers.lock().ok()?;
        if self.ended.load(Ordering::Acquire) {
            return None;
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        subscribers.push(tx);
        Some(rx)
    }

    /// The newest client stream still open, dropping closed ones. With none left the hub ends
    /// here, under the lock, so no new client can join a hub that is going away.
    fn newest(&self) -> Option<mpsc::Sender<Bytes>> {
        let mut subscribers = self.subscribers.lock().ok()?;
        subscribers.retain(|tx| !tx.is_closed());
        if subscribers.is_empty() {
            self.ended.store(true, Ordering::Release);
        }
        subscribers.last().cloned()
    }

    /// Drops one client stream (it stopped reading).
    fn drop_subscriber(&self, stalled: &mpsc::Sender<Bytes>) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.retain(|tx| !tx.same_channel(stalled));
        }
    }

    /// Keep-alives to every client stream (so a closed client is noticed); whether any is left
    /// (with none, the hub ends as in `newest`).
    fn keep_alive(&self) -> bool {
        let Ok(mut subscribers) = self.subscribers.lock() else {
            return false;
        };
        subscribers.retain(
            |tx| match tx.try_send(Bytes::from_static(b": keep-alive\n\n")) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        );
        if subscribers.is_empty() {
            self.ended.store(true, Ordering::Release);
        }
        !subscribers.is_empty()
    }

    fn end(&self) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            self.ended.store(true, Ordering::Release);
            // Dropping the senders ends every client stream.
            subscribers.clear();
        }
    }
}

/// Starts relaying an opened backend GET stream; returns the hub and its first client stream.
pub fn start(res: BackendResponse, target: Target) -> (Arc<StreamHub>, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
    let hub = Arc::new(StreamHub {
        subscribers: Mutex::new(vec![tx]),
        ended: AtomicBool::new(false),
    });
    let pump = hub.clone();
    tokio::spawn(async move {
        let mut stream = res.bytes_stream();
        let mut parser = sse::Parser::new(target.max_response_bytes);
        // Keep-alives go out every KEEP_ALIVE whatever the backend sends (a backend that only
        // sends comments would otherwise keep a hub with no client alive).
        let mut last_keep_alive = tokio::time::Instant::now();
        'relay: loop {
            let chunk = match tokio::time::timeout(KEEP_ALIVE, stream.next()).await {
                Err(_) => None,
                Ok(Some(Ok(chunk))) => Some(chunk),
                Ok(None | Some(Err(_))) => break,
            };
            let events = match chunk.map(|c| parser.push(&c)) {
                None => Vec::new(),
                Some(Ok(events)) => events,
                Some(Err(sse::TooLarge)) => {
                    tracing::warn!(server = %target.name, "a backend stream event exceeded MCP_MAX_RESPONSE_BYTES; dropped the stream");
                    break;
                }
            };
            for event in events {
                let bytes = event.encode();
                // To one client stream: the newest open one (the next if it closed or stalled).
                loop {
                    let Some(tx) = pump.newest() else {
                        break 'relay;
                    };
                    match tx.send_timeout(bytes.clone(), STALLED).await {
                        Ok(()) => break,
                        Err(mpsc::error::SendTimeoutError::Timeout(_)) => pump.drop_subscriber(&tx),
                        Err(mpsc::error::SendTimeoutError::Closed(_)) => {}
                    }
                }
            }
            if last_keep_alive.elapsed() >= KEEP_ALIVE {
                if !pump.keep_alive() {
                    break;
                }
                last_keep_alive = tokio::time::Instant::now();
            }
        }
        pump.end();
    });
    (hub, rx)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn target() -> Target {
        let url = reqwest::Url::parse("http://127.0.0.1:9/mcp").unwrap();
        Target {
            name: "t".into(),
            url: url.to_string(),
            direct: None,
            parsed_url: url,
            credential: crate::mcp::backend::Credential::None,
            timeout: Duration::from_secs(5),
            max_response_bytes: 1 << 20,
        }
    }

    /// A backend stream fed by the returned sender.
    fn backend() -> (mpsc::Sender<&'static str>, BackendResponse) {
        let (tx, rx) = mpsc::channel::<&'static str>(8);
        let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|s| {
                (
                    Ok::<_, std::io::Error>(Bytes::from_static(s.as_bytes())),
                    rx,
                )
            })
        });
        let res = http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(reqwest::Body::wrap_stream(chunks))
            .unwrap();
        (tx, BackendResponse::Reqwest(reqwest::Response::from(res)))
    }

    async fn next(rx: &mut mpsc::Receiver<Bytes>) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .ok()
            .flatten()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn each_event_goes_to_one_stream_the_newest_open_one() {
        let (feed, res) = backend();
        let (hub, mut first) = start(res, target());
        feed.send("data: {\"n\":1}\n\n").await.unwrap();
        assert_eq!(
            next(&mut first).await.as_deref(),
            Some("data: {\"n\":1}\n\n")
        );

        let mut second = hub.subscribe().unwrap();
        feed.send("data: {\"n\":2}\n\n").await.unwrap();
        assert_eq!(
            next(&mut second).await.as_deref(),
            Some("data: {\"n\":2}\n\n")
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(200), first.recv())
                .await
                .is_err(),
            "an event reaches one stream only"
        );

        // The newest stream goes away: events fall back to the one still open.
        drop(second);
        feed.send("data: {\"n\":3}\n\n").await.unwrap();
        assert_eq!(
            next(&mut first).await.as_deref(),
            Some("data: {\"n\":3}\n\n")
        );

        // The backend ends its stream: every client stream ends, and the hub takes no one new.
        drop(feed);
        assert_eq!(next(&mut first).await, None);
        assert!(hub.subscribe().is_none());
    }

    #[tokio::test]
    async fn the_backend_stream_closes_when_no_client_stream_is_left() {
        let (feed, res) = backend();
        let (hub, first) = start(res, target());
        drop(first);
        // The next event finds nobody to deliver to: the hub ends and drops the backend stream.
        feed.send("data: {}\n\n").await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), feed.closed())
            .await
            .expect("the backend stream is dropped");
        assert!(hub.subscribe().is_none());
    }
}
