//! # The embedded MQTT broker (rumqttd)
//!
//! For an appliance or a test bench that has no Mosquitto, [`start_embedded`] runs rumqttd
//! in-process with one MQTT 3.1.1 listener.
//!
//! - The configuration is built as TOML and parsed into `rumqttd::Config` (rumqttd needs `id`, a
//!   `[router]` table and a `[v4.1]` listener with its `[v4.1.connections]`).
//! - `Broker::start()` blocks for ever, so it runs on its own named thread. rumqttd has no way to
//!   stop it: **the thread lives until the process exits**, and so does the port. Start one per
//!   process (or per test) and let the process end take it down.
//! - [`start_embedded`] returns only once the port accepts TCP connections, waiting at most
//!   [`READY_TIMEOUT`]; a port already in use or a broker thread that died is an error.
//! - Persistent sessions (`clean_session = false`) are kept in memory: they survive a client's
//!   reconnect, not a restart of the process.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How long [`start_embedded`] waits for the listener to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running embedded broker. Dropping it does not stop the broker (see the module docs).
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    _thread: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// The address MQTT clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Starts rumqttd listening on `listen`. Port 0 picks a free port (read it back with
/// [`EmbeddedBroker::addr`]).
pub fn start_embedded(listen: SocketAddr) -> anyhow::Result<EmbeddedBroker> {
    let addr = if listen.port() == 0 {
        let probe = TcpListener::bind(listen)
            .with_context(|| format!("finding a free port on {}", listen.ip()))?;
        probe.local_addr().context("reading the probed port")?
    } else {
        listen
    };
    // Fail early and clearly if something already listens there (rumqttd would only log it).
    drop(
        TcpListener::bind(addr)
            .with_context(|| format!("embedded MQTT broker cannot listen on {addr}"))?,
    );

    let toml_text = format!(
        r#"
id = 0

[router]
id = 0
max_connections = 1010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "{addr}"
next_connection_delay_ms = 1

[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = {max_payload}
max_inflight_count = 500
dynamic_filters = true
"#,
        max_payload = crate::link::MAX_PACKET_BYTES,
    );
    let config: rumqttd::Config =
        toml::from_str(&toml_text).context("building the embedded rumqttd configuration")?;

    let thread = std::thread::Builder::new()
        .name(format!("rumqttd-{}", addr.port()))
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(error) = broker.start() {
                tracing::error!(%addr, %error, "embedded MQTT broker stopped");
            }
        })
        .context("spawning the embedded MQTT broker thread")?;

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(EmbeddedBroker {
                addr,
                _thread: thread,
            });
        }
        if thread.is_finished() {
            bail!(
                "embedded MQTT broker on {addr} stopped before accepting connections (see the log)"
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "embedded MQTT broker on {addr} did not accept connections within {} s",
                READY_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
