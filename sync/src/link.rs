//! # The MQTT link shared by the uplink and the receiver
//!
//! Both ends of the sync talk to a broker the same way, so the mechanics live here once:
//!
//! - [`mqtt_options`]: a persistent session (`clean_session = false`, so the broker keeps our
//!   subscriptions and queues QoS 1 messages while we are away), packets up to
//!   [`MAX_PACKET_BYTES`], and [`network_options`] with TCP_NODELAY (without it every small
//!   publish waits ~40 ms for Nagle).
//! - [`TlsFiles`]: optional TLS (rustls) with the broker's CA and, for mutual TLS, the client's
//!   certificate and key, all PEM files; [`apply_tls`] reads them into the MQTT options.
//! - [`Backoff`]: exponential reconnect delay, capped, with jitter. Pure: the caller supplies the
//!   random fraction, so tests are deterministic.
//! - [`spawn_event_pump`]: a task that owns rumqttc's `EventLoop`, polls it, sleeps the backoff
//!   after a failure and forwards what happened as [`LinkEvent`]s on an unbounded channel.
//!   Posts speak MQTT 3.1.1 (`rumqttc`), central's receiver MQTT 5 (`rumqttc::v5`, for shared
//!   subscriptions); both event loops implement [`MqttEventLoop`], so one pump serves both.
//!
//! ## Why a separate pump task
//! The drivers (`uplink`, `central`) both publish and consume events. If one task did both,
//! awaiting a full request channel would stop the polling that empties it. With the pump on its
//! own task the driver may await `publish`, and `EventLoop::poll` is never cancelled by a
//! `select!` (rumqttc does not promise that polling is cancel-safe). The event channel is unbounded
//! so the pump never waits on the driver; the driver consumes events as fast as it can.
//!
//! ## Connection-state logging
//! The pump logs state *changes* once: INFO on connect, WARN on the first failure after being
//! connected (or the first failure ever), DEBUG for the retries in between, INFO on reconnect with
//! the number of attempts it took.
//!
//! ## Shutdown
//! The driver calls `disconnect()` on its client and then drains the channel: the pump forwards
//! [`LinkEvent::Disconnected`] after the DISCONNECT packet went out and ends (after a disconnect
//! rumqttc's `poll` only returns `ConnectionAborted`, so polling further is pointless). The pump
//! also ends as soon as the driver drops the receiving end of the channel.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet,
    Publish,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The largest MQTT packet either side sends or accepts (a record is a few kilobytes).
pub const MAX_PACKET_BYTES: usize = 1024 * 1024;

/// The first reconnect delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// The longest reconnect delay (before jitter).
pub const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// How long the drivers wait for the DISCONNECT to go out at shutdown.
pub(crate) const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// TLS for an MQTT link: PEM files. Without a client certificate the link is server-authenticated
/// only; with one, the broker can require it (mutual TLS, one certificate per post).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the broker's certificate.
    pub ca: std::path::PathBuf,
    /// The client's certificate and private key (both or neither).
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
}

/// Switches `opts` to TLS with `tls`'s files.
pub fn apply_tls(opts: &mut MqttOptions, tls: &TlsFiles) -> anyhow::Result<()> {
    opts.set_transport(tls_transport(tls)?);
    Ok(())
}

/// The TLS transport (rustls) for `tls`'s files, for either MQTT version's options.
pub(crate) fn tls_transport(tls: &TlsFiles) -> anyhow::Result<rumqttc::Transport> {
    use anyhow::Context as _;
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("reading TLS file {}", p.display()))
    };
    let ca = read(&tls.ca)?;
    let client_auth = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        (None, None) => None,
        _ => anyhow::bail!("TLS: give both a client certificate and its key, or neither"),
    };
    Ok(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    }))
}

/// Exponential backoff with jitter: `initial * 2^n`, capped, then stretched by up to a quarter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial,
            cap,
            attempt: 0,
        }
    }

    /// The delay before the next attempt; `jitter` in `0.0..1.0` adds up to 25 % so that many
    /// posts cut off together do not reconnect in lockstep.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        base.mul_f64(1.0 + 0.25 * jitter.clamp(0.0, 1.0))
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the initial delay (after a successful connect).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random fraction in `0.0..1.0` from the standard library's per-process random keys.
pub(crate) fn jitter() -> f64 {
    let bits = RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Network options for both ends: TCP_NODELAY on, a bounded connect timeout.
pub(crate) fn network_options() -> NetworkOptions {
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(5);
    net
}

/// MQTT options for a persistent-session client.
pub(crate) fn mqtt_options(
    client_id: &str,
    host: &str,
    port: u16,
    keep_alive: Duration,
) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_clean_session(false)
        .set_keep_alive(keep_alive.max(Duration::from_secs(1)))
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    opts
}

/// Creates the client and its event loop with the shared network options.
pub(crate) fn client(opts: MqttOptions, cap: usize) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(opts, cap);
    eventloop.set_network_options(network_options());
    (client, eventloop)
}

/// How long the broker keeps an MQTT 5 session (subscriptions and queued QoS 1 messages) of a
/// disconnected client: a week, as long as a post's outbox is sized to ride out.
pub const SESSION_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// MQTT 5 options for a persistent-session client: `clean_start = false` and a
/// [`SESSION_EXPIRY`] (in MQTT 5 a session without an expiry ends with the connection).
pub(crate) fn mqtt5_options(
    client_id: &str,
    host: &str,
    port: u16,
    keep_alive: Duration,
) -> rumqttc::v5::MqttOptions {
    let mut opts = rumqttc::v5::MqttOptions::new(client_id, host, port);
    let expiry = u32::try_from(SESSION_EXPIRY.as_secs()).unwrap_or(u32::MAX);
    let max = u32::try_from(MAX_PACKET_BYTES).unwrap_or(u32::MAX);
    opts.set_clean_start(false)
        .set_session_expiry_interval(Some(expiry))
        .set_keep_alive(keep_alive.max(Duration::from_secs(1)))
        .set_max_packet_size(Some(max))
        .set_network_options(network_options());
    opts
}

/// One MQTT version's event loop as the pump sees it.
pub(crate) trait MqttEventLoop: Send + 'static {
    /// An incoming PUBLISH of this version.
    type Message: Send + 'static;
    /// Polls once (and so reconnects after a failure).
    fn next(&mut self) -> impl Future<Output = Polled<Self::Message>> + Send;
}

/// One poll's result, in the pump's terms.
pub(crate) enum Polled<M> {
    ConnAck {
        session_present: bool,
    },
    Message(M),
    /// Our DISCONNECT went out.
    DisconnectSent,
    /// Anything else that moved (acks, pings, our own packets).
    Other,
    /// Every client handle is gone.
    RequestsDone,
    /// The connection failed; the text says why.
    Failed(String),
}

impl MqttEventLoop for EventLoop {
    type Message = Publish;
    async fn next(&mut self) -> Polled<Publish> {
        match self.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => Polled::ConnAck {
                session_present: ack.session_present,
            },
            Ok(Event::Incoming(Packet::Publish(p))) => Polled::Message(p),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Polled::DisconnectSent,
            Ok(_) => Polled::Other,
            Err(ConnectionError::RequestsDone) => Polled::RequestsDone,
            Err(e) => Polled::Failed(e.to_string()),
        }
    }
}

impl MqttEventLoop for rumqttc::v5::EventLoop {
    type Message = rumqttc::v5::mqttbytes::v5::Publish;
    async fn next(&mut self) -> Polled<Self::Message> {
        use rumqttc::v5::mqttbytes::v5::Packet as P5;
        use rumqttc::v5::{ConnectionError as E5, Event as Ev5};
        match self.poll().await {
            Ok(Ev5::Incoming(P5::ConnAck(ack))) => Polled::ConnAck {
                session_present: ack.session_present,
            },
            Ok(Ev5::Incoming(P5::Publish(p))) => Polled::Message(p),
            Ok(Ev5::Outgoing(Outgoing::Disconnect)) => Polled::DisconnectSent,
            Ok(_) => Polled::Other,
            Err(E5::RequestsDone) => Polled::RequestsDone,
            Err(e) => Polled::Failed(e.to_string()),
        }
    }
}

/// What the pump tells the driver.
#[derive(Debug)]
pub(crate) enum LinkEvent<M = Publish> {
    /// A CONNACK arrived: the session is (re)established.
    Connected { session_present: bool },
    /// The connection failed or was closed; the pump retries after a backoff.
    ConnectionLost,
    /// A message arrived on a subscription.
    Message(M),
    /// Something else moved (an ack, a ping): a chance for the driver to send more.
    Progress,
    /// Our DISCONNECT went out; the pump has stopped.
    Disconnected,
}

/// Spawns the task that polls `eventloop`. `name` and `broker` only label the logs.
pub(crate) fn spawn_event_pump<E: MqttEventLoop>(
    mut eventloop: E,
    name: &'static str,
    broker: String,
    tx: mpsc::UnboundedSender<LinkEvent<E::Message>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_CAP);
        let mut connected = false;
        let mut warned = false;
        loop {
            let polled = tokio::select! {
                polled = eventloop.next() => polled,
                () = tx.closed() => return,
            };
            let event = match polled {
                Polled::ConnAck { session_present } => {
                    let attempts = backoff.attempts();
                    tracing::info!(link = name, %broker, session_present, attempts, "MQTT connected");
                    backoff.reset();
                    connected = true;
                    warned = false;
                    LinkEvent::Connected { session_present }
                }
                Polled::Message(publish) => LinkEvent::Message(publish),
                Polled::DisconnectSent => {
                    tracing::info!(link = name, %broker, "MQTT disconnected at shutdown");
                    let _ = tx.send(LinkEvent::Disconnected);
                    return;
                }
                Polled::Other => LinkEvent::Progress,
                Polled::RequestsDone => {
                    // Every client handle is gone: nobody can ask for anything any more.
                    let _ = tx.send(LinkEvent::Disconnected);
                    return;
                }
                Polled::Failed(error) => {
                    let delay = backoff.next_delay(jitter());
                    if connected || !warned {
                        tracing::warn!(link = name, %broker, %error, retry_in_ms = delay.as_millis() as u64, "MQTT connection lost; retrying with backoff");
                        warned = true;
                    } else {
                        tracing::debug!(link = name, %broker, %error, attempt = backoff.attempts(), retry_in_ms = delay.as_millis() as u64, "MQTT reconnect failed");
                    }
                    let was_connected = std::mem::replace(&mut connected, false);
                    if was_connected && tx.send(LinkEvent::ConnectionLost).is_err() {
                        return;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = tx.closed() => return,
                    }
                    continue;
                }
            };
            if tx.send(event).is_err() {
                return;
            }
        }
    })
}

/// Waits (bounded) for the pump to report the end of the session after `disconnect()`.
pub(crate) async fn drain_until_disconnected<M>(rx: &mut mpsc::UnboundedReceiver<LinkEvent<M>>) {
    let drained = tokio::time::timeout(DISCONNECT_GRACE, async {
        while let Some(event) = rx.recv().await {
            if matches!(event, LinkEvent::Disconnected) {
                break;
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!("no clean MQTT disconnect within the grace period; dropping the link");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let delays: Vec<_> = (0..10).map(|_| b.next_delay(0.0).as_millis()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(100));
        assert_eq!(b.next_delay(1.0), Duration::from_millis(250));
    }

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
