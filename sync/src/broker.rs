//! # The embedded MQTT broker (rumqttd)
//!
//! For an appliance or a test bench that has no Mosquitto, [`start_embedded`] runs rumqttd
//! in-process with two listeners: MQTT 3.1.1 on the address asked for (the posts' uplinks speak
//! 3.1.1) and MQTT 5 on another free port of the same interface
//! ([`EmbeddedBroker::v5_addr`], where central's receivers subscribe with MQTT 5 shared
//! subscriptions). rumqttd routes messages between the two.
//!
//! - The configuration is built as TOML and parsed into `rumqttd::Config` (rumqttd needs `id`, a
//!   `[router]` table and a `[v4.1]` / `[v5.1]` listener with its `connections` table).
//! - `Broker::start()` blocks for ever, so it runs on its own named thread. rumqttd has no way to
//!   stop it: **the thread lives until the process exits**, and so does the port. Start one per
//!   process (or per test) and let the process end take it down.
//! - [`start_embedded`] returns only once both listeners answer an MQTT CONNECT with a CONNACK,
//!   waiting at most [`READY_TIMEOUT`]; a port already in use or a broker thread that died is
//!   an error. A TCP connection alone proves nothing: a process forked by another thread in the
//!   moment between the release of a held port and rumqttd's bind keeps a copy of the held
//!   listener until it execs; rumqttd's bind then fails (rumqttd only logs it) while the copy
//!   still accepts. With a port of 0 (free ports drawn here), a start whose listeners do not
//!   answer within [`ATTEMPT_TIMEOUT`] is tried again on fresh ports, up to [`START_ATTEMPTS`]
//!   times (seen in `sync/tests/shared_images.rs`, about one run in ten, where Mosquitto is
//!   spawned beside rumqttd).
//! - Persistent sessions (`clean_session = false`) are kept in memory: they survive a client's
//!   reconnect, not a restart of the process.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// How long [`start_embedded`] waits for the listeners to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one start on drawn ports may take to answer before it is tried on fresh ports.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Starts tried on drawn ports (port 0) before [`start_embedded`] gives up.
pub const START_ATTEMPTS: u32 = 3;

/// A running embedded broker. Dropping it does not stop the broker (see the module docs).
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    v5_addr: SocketAddr,
    _thread: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// The MQTT 3.1.1 listener (posts connect here).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MQTT 5 listener (central's receivers connect here).
    pub fn v5_addr(&self) -> SocketAddr {
        self.v5_addr
    }
}

/// Binds the two listeners' addresses and holds them: `listen` itself (or a free port on its
/// interface when its port is 0) and a free port beside it for MQTT 5. Free ports are drawn
/// below the kernel's ephemeral range ([`crate::loopback::hold_free_port`]): between their
/// release and rumqttd's bind, no outgoing connection can be given one, and the readiness
/// probe cannot connect to itself on one (a probe from an ephemeral port to the same port,
/// while nothing listens yet, connects to itself: rumqttd's bind then fails and the probe said
/// "up"; seen once in CI, as an agent refused for a minute).
fn hold_ports(listen: SocketAddr) -> anyhow::Result<(TcpListener, TcpListener)> {
    let v4 = match listen.port() {
        0 => crate::loopback::hold_free_port(listen.ip()),
        _ => TcpListener::bind(listen).map_err(anyhow::Error::from),
    }
    .with_context(|| format!("embedded MQTT broker cannot listen on {listen}"))?;
    let v5 = crate::loopback::hold_free_port(listen.ip())
        .with_context(|| format!("finding a free port on {} for MQTT 5", listen.ip()))?;
    Ok((v4, v5))
}

/// Starts rumqttd listening on `listen`. Port 0 picks a free port (read it back with
/// [`EmbeddedBroker::addr`]).
pub fn start_embedded(listen: SocketAddr) -> anyhow::Result<EmbeddedBroker> {
    if listen.port() != 0 {
        return start_once(listen, READY_TIMEOUT);
    }
    let mut attempt = 1;
    loop {
        match start_once(listen, ATTEMPT_TIMEOUT) {
            Ok(broker) => return Ok(broker),
            Err(e) if attempt < START_ATTEMPTS => {
                // The failed start's thread lives on (rumqttd cannot be stopped), listening
                // on at most one of its two ports: a test-bench cost, never an appliance's.
                tracing::warn!(attempt, error = %format!("{e:#}"), "embedded MQTT broker did not answer; starting it again on other ports");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One start of rumqttd on `listen`, ready within `ready_timeout`.
fn start_once(listen: SocketAddr, ready_timeout: Duration) -> anyhow::Result<EmbeddedBroker> {
    // Fail early and clearly if something already listens there (rumqttd would only log it).
    // Both ports are held until just before rumqttd binds them, so that no other socket on this
    // machine is given one of them meanwhile (a port picked and released at once could be).
    let (held_v4, held_v5) = hold_ports(listen)?;
    let addr = held_v4
        .local_addr()
        .context("reading the MQTT 3.1.1 port")?;
    let v5_addr = held_v5.local_addr().context("reading the MQTT 5 port")?;

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

[v5.1]
name = "v5-1"
listen = "{v5_addr}"
next_connection_delay_ms = 1

[v5.1.connections]
connection_timeout_ms = 60000
max_payload_size = {max_payload}
max_inflight_count = 500
dynamic_filters = true
"#,
        max_payload = crate::link::MAX_PACKET_BYTES,
    );
    let config: rumqttd::Config =
        toml::from_str(&toml_text).context("building the embedded rumqttd configuration")?;

    drop(held_v4);
    drop(held_v5);
    let thread = std::thread::Builder::new()
        .name(format!("rumqttd-{}", addr.port()))
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(error) = broker.start() {
                tracing::error!(%addr, %error, "embedded MQTT broker stopped");
            }
        })
        .context("spawning the embedded MQTT broker thread")?;

    let deadline = Instant::now() + ready_timeout;
    loop {
        if answers_connect(&addr, 4) && answers_connect(&v5_addr, 5) {
            tracing::info!(%addr, %v5_addr, "embedded MQTT broker listening (3.1.1, 5)");
            return Ok(EmbeddedBroker {
                addr,
                v5_addr,
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
                "embedded MQTT broker on {addr} (MQTT 5 on {v5_addr}) did not answer a CONNECT \
                 within {} s",
                ready_timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether an MQTT server of protocol `level` (4: 3.1.1, 5: 5) at `addr` answers a CONNECT
/// with a CONNACK. A connection to itself is not rumqttd listening (see `hold_ports`), nor is a
/// listening socket that accepts but never answers (see the module docs).
fn answers_connect(addr: &SocketAddr, level: u8) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream.local_addr().ok() == stream.peer_addr().ok() {
        return false;
    }
    let id = format!("bcp-ready-{}-{level}", addr.port());
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 30];
    if level == 5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    let mut first = [0u8; 1];
    let answered = stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .and_then(|()| stream.write_all(&packet))
        .and_then(|()| stream.read_exact(&mut first))
        .is_ok_and(|()| first[0] == 0x20);
    // A clean goodbye: DISCONNECT (reason code 0 for MQTT 5 is its default).
    let _ = stream.write_all(&[0xE0, 0]);
    answered
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = start_embedded(addr).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(&format!("cannot listen on {addr}")), "{text}");
    }

    #[test]
    fn port_zero_gives_two_listening_ports_below_the_ephemeral_range() {
        let broker = start_embedded(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        assert_ne!(broker.addr().port(), 0);
        assert_ne!(broker.addr(), broker.v5_addr());
        for addr in [broker.addr(), broker.v5_addr()] {
            assert!(
                addr.port() < crate::loopback::ephemeral_low(),
                "{addr}: in the range outgoing connections use"
            );
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
            // rumqttd holds them: nothing else may bind there.
            assert!(TcpListener::bind(addr).is_err(), "{addr} not held");
        }
    }
}
