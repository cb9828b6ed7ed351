//! Client connections: how many, from where, and for how long a quiet one may stay.
//!
//! Every accepted socket is admitted here before hyper sees it, and watched while it lives:
//!
//! * **caps**: at most `MAX_CONNECTIONS` open at once and `MAX_CONNECTIONS_PER_IP` from one
//!   address (IPv6 counted per /64; `TRUSTED_PROXIES` exempt, since every client behind them
//!   shares their address). A socket over the per-address cap is closed at once.
//! * **timeouts**: a connection that has started sending a request head must finish it within
//!   `HTTP_HEADER_TIMEOUT_SECS`; a connection with no request in progress is closed after
//!   `HTTP_IDLE_TIMEOUT_SECS`. Neither applies while a request is in progress (a streaming
//!   response, a slow backend): those are bounded by their own timeouts.
//! * **shedding**: when the total reaches the cap (or `accept` runs out of descriptors), every
//!   connection with no request in progress is closed, so a flood of idle or half-open sockets
//!   cannot lock out the clients that are actually being served, or new ones.
//!
//! The gateway also raises its soft `RLIMIT_NOFILE` to the hard limit at start-up
//! (`raise_fd_limit`); the default cap is derived from the result.

use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use dashmap::DashMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};

use crate::config::{ConnConfig, IpNet};

/// Descriptors kept back from the connection cap (database, logs, backend connections).
const FD_RESERVE_MIN: u64 = 256;
/// Shedding happens at most this often (each one wakes every connection's watchdog).
const SHED_EVERY_MS: u64 = 100;
/// A connection quiet for less than this is not shed (a client that just connected and is
/// about to send its request).
const SHED_MIN_QUIET_MS: u64 = 250;

/// Raises the soft limit on open files to the hard limit (a no-op where it already is).
/// Returns the soft limit now in force, if it is known.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
            && current < maximum
        {
            let raised = rustix::process::Rlimit {
                current: Some(maximum),
                maximum: Some(maximum),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::info!(from = current, to = maximum, "raised the open-file limit")
                }
                Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap: `MAX_CONNECTIONS` when set, else what the descriptor limit allows with a
/// reserve of a tenth (at least 256) for everything else the gateway opens, counting the eighth
/// over the cap admitted while shedding.
pub fn max_connections(config: &ConnConfig) -> usize {
    if let Some(max) = config.max_connections {
        return max;
    }
    #[cfg(unix)]
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    #[cfg(not(unix))]
    let limit: Option<u64> = None;
    let limit = limit.unwrap_or(65_536).min(1_000_000);
    let reserve = (limit / 10).max(FD_RESERVE_MIN);
    // Admission goes up to an eighth over the cap while quiet connections close: that must
    // still leave the reserve.
    usize::try_from((limit.saturating_sub(reserve) * 8 / 9).max(64)).unwrap_or(64)
}

/// Milliseconds on the runtime's monotonic clock, shared by every connection.
fn now_ms() -> u64 {
    static START: OnceLock<tokio::time::Instant> = OnceLock::new();
    let start = *START.get_or_init(tokio::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What the connection caps count a client address as: itself, or its /64 for IPv6 (one
/// host usually holds a whole /64).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The gateway's open connections: counts, caps and the shedding signal.
pub struct Connections {
    header_timeout: Duration,
    idle_timeout: Duration,
    max: usize,
    max_per_ip: usize,
    trusted: Vec<IpNet>,
    open: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
    /// Bumped to ask every connection with no request in progress to close.
    shed: watch::Sender<u64>,
    last_shed: AtomicU64,
}

/// Why a socket was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its address already holds `MAX_CONNECTIONS_PER_IP`.
    PerAddress,
    /// The gateway holds `MAX_CONNECTIONS` and none of them could be shed.
    Full,
}

impl Connections {
    pub fn new(config: &ConnConfig, trusted: Vec<IpNet>) -> Arc<Connections> {
        Arc::new(Connections {
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
            max: max_connections(config),
            max_per_ip: config.max_per_ip,
            trusted,
            open: AtomicUsize::new(0),
            per_ip: DashMap::new(),
            shed: watch::Sender::new(0),
            last_shed: AtomicU64::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Open connections (upgraded ones included).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a socket from `ip`, or says why not. At the cap, connections with no request in
    /// progress are asked to close and the new one is let in while they go (up to an eighth
    /// over the cap, which the descriptor reserve covers).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let key = (self.max_per_ip > 0 && !self.trusted.iter().any(|n| n.contains(ip)))
            .then(|| address_key(ip));
        if let Some(key) = key {
            let mut count = self.per_ip.entry(key).or_insert(0);
            if *count >= self.max_per_ip {
                return Err(Refused::PerAddress);
            }
            *count += 1;
        }
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        let admitted = Admitted {
            conns: self.clone(),
            key,
        };
        if open >= self.max {
            self.shed();
            if open > self.max + self.max / 8 {
                return Err(Refused::Full);
            }
        }
        Ok(admitted)
    }

    /// Asks every connection quiet for a moment (no request in progress) to close: the
    /// descriptor limit is near. At most every `SHED_EVERY_MS`.
    pub fn shed(&self) {
        // 0: never shed yet.
        let now = now_ms().max(1);
        let last = self.last_shed.load(Ordering::Relaxed);
        let too_soon = last != 0 && now.saturating_sub(last) < SHED_EVERY_MS;
        if too_soon
            || self
                .last_shed
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.shed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn release(&self, key: Option<IpAddr>) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(key) = key {
            self.per_ip.remove_if_mut(&key, |_, count| {
                *count -= 1;
                *count == 0
            });
        }
    }
}

/// An admitted socket's place in the counts, given back when the socket closes (which, for an
/// upgraded connection, is when the WebSocket ends).
pub struct Admitted {
    conns: Arc<Connections>,
    key: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.conns.release(self.key);
    }
}

impl Admitted {
    /// Wraps the socket so its quiet phases can be timed; returns it with its watchdog.
    pub fn watch<T>(self) -> (Arc<Watch>, impl FnOnce(T) -> Watched<T>) {
        let watch = Arc::new(Watch {
            active: AtomicU32::new(0),
            since: AtomicU64::new(now_ms()),
            heard: AtomicBool::new(false),
            idle_wait: AtomicBool::new(false),
            stalled_since: AtomicU64::new(0),
            wake: Notify::new(),
            shed: self.conns.shed.subscribe(),
            header_timeout: self.conns.header_timeout,
            idle_timeout: self.conns.idle_timeout,
        });
        let for_io = watch.clone();
        (watch, move |io| Watched {
            io,
            watch: for_io,
            _admitted: self,
        })
    }
}

/// One connection's state as its watchdog sees it.
pub struct Watch {
    /// Requests in progress: from the service call until the response body is dropped (sent,
    /// or abandoned with the connection).
    active: AtomicU32,
    /// When the current quiet phase (no request in progress) began, or when its first byte of
    /// a request head arrived.
    since: AtomicU64,
    /// A byte of the next request has arrived in this quiet phase (the head timeout runs).
    heard: AtomicBool,
    /// The watchdog is waiting out the idle timeout (a request's first byte must wake it).
    idle_wait: AtomicBool,
    /// When a write started waiting for the client to read (0: none waiting). A response the
    /// client has not read for the idle timeout closes the connection.
    stalled_since: AtomicU64,
    wake: Notify,
    shed: watch::Receiver<u64>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Watch {
    /// A request is in progress until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InProgress {
        self.active.fetch_add(1, Ordering::Relaxed);
        InProgress(self.clone())
    }

    fn quiet(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    /// Notes whether a write had to wait for the client to read.
    fn wrote(&self, pending: bool) {
        let stalled = self.stalled_since.load(Ordering::Relaxed);
        if pending && stalled == 0 {
            self.stalled_since.store(now_ms().max(1), Ordering::Release);
        } else if !pending && stalled != 0 {
            self.stalled_since.store(0, Ordering::Release);
        }
    }

    /// Completes when the connection should be closed: its quiet phase outlasted its timeout,
    /// the gateway is shedding and it has been quiet for a moment, or a response in progress
    /// has waited for the client to read it for the idle timeout.
    pub async fn expired(&self) {
        // A shed asked for since this connection was admitted counts too.
        let mut shed = self.shed.clone();
        let idle_ms = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            let wake = self.wake.notified();
            if !self.quiet() {
                // Not woken when the request ends (that would cost a wake-up per request):
                // the quiet deadline is computed when this sleep ends, at most one idle
                // timeout after it began, so never later than the request's end plus that.
                let stalled = self.stalled_since.load(Ordering::Acquire);
                let wait = if stalled == 0 {
                    idle_ms
                } else {
                    let elapsed = now_ms().saturating_sub(stalled);
                    if elapsed >= idle_ms {
                        return;
                    }
                    idle_ms - elapsed
                };
                tokio::select! {
                    () = wake => {}
                    () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    changed = shed.changed() => if changed.is_err() { std::future::pending::<()>().await },
                }
                continue;
            }
            // Waiting out the idle timeout, the first byte of a request must wake the watchdog
            // (its head timeout is shorter): say so before reading `heard` (the reader sets
            // `heard` before reading this flag, so one of the two sees the other).
            self.idle_wait.store(true, Ordering::SeqCst);
            let heard = self.heard.load(Ordering::SeqCst);
            if heard {
                self.idle_wait.store(false, Ordering::SeqCst);
            }
            let limit = if heard {
                self.header_timeout
            } else {
                self.idle_timeout
            };
            let since = self.since.load(Ordering::Acquire);
            let elapsed = now_ms().saturating_sub(since);
            let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
            if elapsed >= limit_ms {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(limit_ms - elapsed)) => {}
                () = wake => {}
                changed = shed.changed() => {
                    if changed.is_err() {
                        std::future::pending::<()>().await;
                    }
                    let quiet_for = now_ms().saturating_sub(self.since.load(Ordering::Acquire));
                    if self.quiet() && quiet_for >= SHED_MIN_QUIET_MS {
                        return;
                    }
                }
            }
        }
    }
}

/// A request in progress on a watched connection.
pub struct InProgress(Arc<Watch>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let watch = &self.0;
        if watch.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            watch.since.store(now_ms(), Ordering::Release);
            watch.heard.store(false, Ordering::Release);
        }
    }
}

/// A response body that keeps its request in progress until it is dropped.
pub struct Tracked<B> {
    inner: B,
    _in_progress: InProgress,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_progress: InProgress) -> Tracked<B> {
        Tracked {
            inner,
            _in_progress: in_progress,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A socket whose reads mark the start of a request head (for the head timeout). Holds the
/// connection's place in the counts.
pub struct Watched<T> {
    io: T,
    watch: Arc<Watch>,
    _admitted: Admitted,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let watch = &self.watch;
            if watch.quiet() && !watch.heard.load(Ordering::Relaxed) {
                watch.since.store(now_ms(), Ordering::Release);
                watch.heard.store(true, Ordering::SeqCst);
                if watch.idle_wait.swap(false, Ordering::SeqCst) {
                    watch.wake.notify_one();
                }
            }
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch.wrote(res.is_pending());
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch.wrote(res.is_pending());
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max: usize, per_ip: usize) -> ConnConfig {
        ConnConfig {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: Some(max),
            max_per_ip: per_ip,
        }
    }

    #[test]
    fn addresses_are_capped_and_released() {
        let conns = Connections::new(&config(100, 2), vec!["10.0.0.0/8".parse().unwrap()]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = conns.admit(a).unwrap();
        let _second = conns.admit(a).unwrap();
        assert_eq!(conns.admit(a).err(), Some(Refused::PerAddress));
        assert!(
            conns.admit("192.0.2.2".parse().unwrap()).is_ok(),
            "another address"
        );
        drop(first);
        assert!(conns.admit(a).is_ok(), "a released place is free again");
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let held: Vec<_> = (0..10).map(|_| conns.admit(proxy).unwrap()).collect();
        assert_eq!(held.len(), 10, "trusted proxies are not capped per address");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let conns = Connections::new(&config(100, 1), vec![]);
        let _one = conns.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            conns.admit("2001:db8::ffff:1".parse().unwrap()).err(),
            Some(Refused::PerAddress),
            "same /64"
        );
        assert!(conns.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _v4 = conns.admit("192.0.2.9".parse().unwrap()).unwrap();
        assert_eq!(
            conns.admit("::ffff:192.0.2.9".parse().unwrap()).err(),
            Some(Refused::PerAddress)
        );
    }

    #[test]
    fn the_map_holds_only_addresses_with_open_connections() {
        let conns = Connections::new(&config(100_000, 10), vec![]);
        for i in 0..1000u32 {
            drop(conns.admit(IpAddr::from(i.to_be_bytes())).unwrap());
        }
        assert!(conns.per_ip.is_empty());
        assert_eq!(conns.open(), 0);
    }

    #[test]
    fn over_the_cap_sheds_then_refuses() {
        let conns = Connections::new(&config(8, 0), vec![]);
        let mut shed = conns.shed.subscribe();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..7).map(|_| conns.admit(ip).unwrap()).collect();
        assert!(!shed.has_changed().unwrap());
        let at_cap = conns.admit(ip).unwrap();
        assert!(shed.has_changed().unwrap(), "reaching the cap sheds");
        shed.mark_unchanged();
        let slack = conns
            .admit(ip)
            .expect("an eighth over the cap while others close");
        assert!(
            !shed.has_changed().unwrap(),
            "at most one shed per {SHED_EVERY_MS} ms"
        );
        assert_eq!(
            conns.admit(ip).err(),
            Some(Refused::Full),
            "beyond that, refused"
        );
        drop((held, at_cap, slack));
        assert_eq!(conns.open(), 0);
    }

    #[tokio::test]
    async fn quiet_connections_expire_busy_ones_do_not() {
        let conns = Connections::new(
            &ConnConfig {
                header_timeout: Duration::from_millis(200),
                idle_timeout: Duration::from_millis(500),
                max_connections: Some(100),
                max_per_ip: 0,
            },
            vec![],
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (watch, _) = conns.admit(ip).unwrap().watch::<()>();
        let guard = watch.begin();
        let busy = tokio::time::timeout(Duration::from_millis(900), watch.expired()).await;
        assert!(busy.is_err(), "a request in progress is never timed out");
        drop(guard);
        let started = tokio::time::Instant::now();
        watch.expired().await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(480) && waited < Duration::from_millis(900),
            "closed after the idle timeout, got {waited:?}"
        );

        let (watch, _) = conns.admit(ip).unwrap().watch::<()>();
        watch.heard.store(true, Ordering::Release);
        let started = tokio::time::Instant::now();
        watch.expired().await;
        assert!(
            started.elapsed() < Duration::from_millis(450),
            "a started head gets the shorter head timeout"
        );

        let (watch, _) = conns.admit(ip).unwrap().watch::<()>();
        let busy = watch.begin();
        conns.shed();
        let busy_shed = tokio::time::timeout(Duration::from_millis(300), watch.expired()).await;
        assert!(
            busy_shed.is_err(),
            "shedding spares connections with a request in progress"
        );
        drop(busy);
        let (young, _) = conns.admit(ip).unwrap().watch::<()>();
        let (quiet, _) = conns.admit(ip).unwrap().watch::<()>();
        tokio::time::sleep(Duration::from_millis(SHED_MIN_QUIET_MS + 50)).await;
        let (fresh, _) = conns.admit(ip).unwrap().watch::<()>();
        let young_guard = young.begin();
        conns.shed();
        tokio::time::timeout(Duration::from_millis(100), quiet.expired())
            .await
            .expect("a connection quiet for a moment is shed at once");
        let spared = tokio::time::timeout(Duration::from_millis(100), fresh.expired()).await;
        assert!(spared.is_err(), "one that just connected is spared");
        drop(young_guard);
    }

    #[tokio::test]
    async fn a_response_the_client_does_not_read_closes_the_connection() {
        let conns = Connections::new(
            &ConnConfig {
                header_timeout: Duration::from_millis(200),
                idle_timeout: Duration::from_millis(400),
                max_connections: Some(100),
                max_per_ip: 0,
            },
            vec![],
        );
        let (watch, _) = conns
            .admit("192.0.2.1".parse().unwrap())
            .unwrap()
            .watch::<()>();
        let _busy = watch.begin();
        watch.wrote(false);
        let moving = tokio::time::timeout(Duration::from_millis(700), watch.expired()).await;
        assert!(moving.is_err(), "writes that complete keep it open");
        watch.wrote(true);
        let started = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(2), watch.expired())
            .await
            .expect("a write stuck for the idle timeout closes it");
        assert!(started.elapsed() >= Duration::from_millis(350));
    }
}
