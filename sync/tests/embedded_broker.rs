//! The embedded broker (rumqttd, patched: `vendor/rumqttd/PATCHED.md`) keeps serving a client
//! id whose earlier connection failed to start: a client that sends its CONNECT and resets the
//! connection before the broker's CONNACK, several times, then connects for real.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// An MQTT 3.1.1 CONNECT packet (clean session, keep-alive 60 s) for `client_id`.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// Publishes one QoS 1 message as `client_id` and waits for its PUBACK.
async fn publish_once(port: u16, client_id: &str) -> anyhow::Result<()> {
    let opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 8);
    client
        .publish(
            "bcp/test/ping",
            rumqttc::QoS::AtLeastOnce,
            false,
            b"ping".to_vec(),
        )
        .await?;
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = eventloop.poll().await? {
                return Ok::<(), rumqttc::ConnectionError>(());
            }
        }
    })
    .await??;
    let _ = client.try_disconnect();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_whose_connection_failed_to_start_can_connect_again() {
    let broker = bcp_sync::start_embedded("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = broker.addr().port();
    publish_once(port, "bcp-flaky").await.unwrap();
    for _ in 0..10 {
        // CONNECT, then a reset (linger 0) before the CONNACK can be written: the broker's link
        // fails to start.
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_zero_linger().unwrap();
        stream
            .write_all(&connect_packet("bcp-flaky"))
            .await
            .unwrap();
        drop(stream);
        tokio::time::sleep(Duration::from_millis(30)).await;
        // The same client id again, for real; then another client.
        publish_once(port, "bcp-flaky").await.unwrap();
        publish_once(port, "bcp-other").await.unwrap();
    }
}
