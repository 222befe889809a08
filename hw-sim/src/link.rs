//! # The post's WAN link, simulated: a TCP proxy that can be cut
//!
//! A border post reaches the central broker over VSAT, GPRS or a fibre that gets cut. The
//! [`LinkProxy`] sits between the post and the broker on loopback and forwards bytes both ways
//! until told to [`cut`](LinkProxy::cut): then every connection through it is dropped at once (as
//! when a modem loses its carrier), and new ones are refused while the link is down.
//! [`LinkProxy::run_cuts`] cuts it again and again on a schedule (each time the post has
//! reconnected and sent for a while), which is what the link-cut tests and
//! `bcp-sim --link-proxy` do.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use rand::{Rng as _, SeedableRng as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy whose connections can all be cut at once. Stops (and cuts) when dropped.
#[derive(Debug)]
pub struct LinkProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    conns: Mutex<Vec<JoinHandle<()>>>,
    down: AtomicBool,
    /// Connections carried (not refused) since the start.
    carried: AtomicUsize,
    /// Cuts made since the start.
    cuts: AtomicUsize,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        // A panic while holding this lock cannot leave the list inconsistent (push or drain).
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When and for how long [`LinkProxy::run_cuts`] cuts the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutSchedule {
    /// How many cuts to make (`None`: until stopped).
    pub cuts: Option<usize>,
    /// After the post has reconnected, the link carries traffic for a random time in this range
    /// (ms) before the next cut.
    pub up_ms: (u64, u64),
    /// The link stays down (refusing connections) for a random time in this range (ms); 0 means
    /// the post may reconnect at once.
    pub down_ms: (u64, u64),
    /// Seed of the random times, logged so that a failing run can be replayed.
    pub seed: u64,
}

impl Default for CutSchedule {
    /// The link-cut test's schedule: up 20-80 ms after each reconnect, down 0-30 ms.
    fn default() -> Self {
        Self {
            cuts: None,
            up_ms: (20, 80),
            down_ms: (0, 30),
            seed: 1,
        }
    }
}

impl LinkProxy {
    /// Listens on `listen` (port 0: a free one) and forwards each connection to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("link proxy: binding {listen}"))?;
        let addr = listener
            .local_addr()
            .context("link proxy: reading the bound address")?;
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            loop {
                let mut inbound = match listener.accept().await {
                    Ok((inbound, _)) => inbound,
                    Err(e) => {
                        // EMFILE and the like: the link is unusable for a moment, not forever.
                        tracing::warn!(error = %e, "link proxy: accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if s.down.load(Ordering::SeqCst) {
                    continue; // the link is down: the connection is dropped at once
                }
                s.carried.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = outbound.set_nodelay(true);
                        let _ = inbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut conns = s.conns();
                conns.retain(|t| !t.is_finished());
                conns.push(task);
            }
        });
        tracing::info!(%addr, %upstream, "link proxy up");
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// Listens on a free loopback port.
    pub async fn start_local(upstream: SocketAddr) -> anyhow::Result<Self> {
        Self::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), upstream).await
    }

    /// Where the post connects instead of the broker.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections carried (not refused) since the start.
    pub fn carried(&self) -> usize {
        self.shared.carried.load(Ordering::SeqCst)
    }

    /// Cuts made since the start.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Kills every connection through the proxy; while `down`, new ones are refused too.
    pub fn cut(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        self.shared.cuts.fetch_add(1, Ordering::SeqCst);
        for task in self.shared.conns().drain(..) {
            task.abort();
        }
    }

    /// Lets connections through again after a `cut(true)`.
    pub fn restore(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// Cuts the link on `schedule`: each time, waits until the post has reconnected (up to
    /// `reconnect_timeout`), lets it carry traffic for a moment, cuts, keeps the link down for a
    /// moment, restores it. Returns the cuts made; an error if the post did not come back.
    pub async fn run_cuts(
        &self,
        schedule: CutSchedule,
        reconnect_timeout: Duration,
    ) -> anyhow::Result<usize> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(schedule.seed);
        let mut made = 0;
        // Connections carried when the last cut was made: a post that connected before the
        // first round (it may be that quick) is not waited for a second time.
        let mut before = 0;
        while schedule.cuts.is_none_or(|n| made < n) {
            let deadline = tokio::time::Instant::now() + reconnect_timeout;
            while self.carried() == before {
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!(
                        "link proxy: the post did not reconnect within {reconnect_timeout:?} \
                         after cut {made}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let up = rng.random_range(schedule.up_ms.0..=schedule.up_ms.1);
            tokio::time::sleep(Duration::from_millis(up)).await;
            let down = rng.random_range(schedule.down_ms.0..=schedule.down_ms.1);
            before = self.carried();
            self.cut(down > 0);
            tokio::time::sleep(Duration::from_millis(down)).await;
            self.restore();
            made += 1;
        }
        Ok(made)
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut(true);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// An echo server standing in for the broker.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn forwards_until_cut_refuses_while_down_and_carries_again_after() {
        let proxy = LinkProxy::start_local(echo().await).await.unwrap();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"weight").await.unwrap();
        let mut buf = [0u8; 6];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"weight");
        assert_eq!(proxy.carried(), 1);

        proxy.cut(true);
        // The cut connection reads end-of-file (or a reset), never more echo.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(rest.is_empty());
        // While down, a new connection is accepted by the kernel and closed at once.
        let mut d = TcpStream::connect(proxy.addr()).await.unwrap();
        let _ = d.write_all(b"x").await;
        let n = tokio::time::timeout(Duration::from_secs(2), d.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert_eq!(proxy.carried(), 1);

        proxy.restore();
        let mut e = TcpStream::connect(proxy.addr()).await.unwrap();
        e.write_all(b"plates").await.unwrap();
        e.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"plates");
        assert_eq!((proxy.carried(), proxy.cuts()), (2, 1));
    }

    #[tokio::test]
    async fn run_cuts_waits_for_each_reconnect() {
        let proxy = Arc::new(LinkProxy::start_local(echo().await).await.unwrap());
        let p = Arc::clone(&proxy);
        // A client that reconnects whenever its connection dies, like the uplink.
        let client = tokio::spawn(async move {
            loop {
                if let Ok(mut s) = TcpStream::connect(p.addr()).await {
                    let mut buf = [0u8; 1];
                    while s.write_all(b"k").await.is_ok() && s.read(&mut buf).await.unwrap_or(0) > 0
                    {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let schedule = CutSchedule {
            cuts: Some(5),
            up_ms: (1, 5),
            down_ms: (0, 5),
            seed: 7,
        };
        let made = proxy
            .run_cuts(schedule, Duration::from_secs(5))
            .await
            .unwrap();
        client.abort();
        assert_eq!(made, 5);
        assert_eq!(proxy.cuts(), 5);
        // One connection before the first cut and one after each of the first four at least.
        assert!(proxy.carried() >= 5, "carried {}", proxy.carried());
    }

    #[tokio::test]
    async fn run_cuts_reports_a_post_that_never_comes_back() {
        let proxy = LinkProxy::start_local(echo().await).await.unwrap();
        let schedule = CutSchedule {
            cuts: Some(1),
            ..CutSchedule::default()
        };
        let err = proxy
            .run_cuts(schedule, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("did not reconnect"), "{err}");
    }
}
