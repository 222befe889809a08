//! The uplink and the receiver over TLS with client certificates (mutual TLS), through a
//! Mosquitto whose TLS listener requires them. Certificates are made for the test with the
//! `openssl` command in a temporary folder: a CA, the broker (SAN 127.0.0.1), the post, central.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bcp_sync::{
    run_receiver, run_uplink, CentralStore, MosquittoProcess, Outbox, ReceiverConfig, TlsFiles,
    UplinkConfig,
};
use common::{crossing, wait_for, POST};
use tokio::sync::{mpsc, watch, Notify};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `<name>.pem` and `<name>.key` signed by the test CA, with `ext` as X.509 extensions.
fn issue(dir: &Path, name: &str, cn: &str, ext: &str) {
    let subj = format!("/CN={cn}");
    let (key, csr, pem, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subj,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &extfile,
        ],
    );
}

fn pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=bcp-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    issue(
        dir,
        "broker",
        "localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    issue(dir, "post", POST, "extendedKeyUsage=clientAuth\n");
    issue(dir, "central", "central", "extendedKeyUsage=clientAuth\n");
    // Mosquitto drops root privileges before it reads its files: let it read them.
    for f in ["ca.pem", "broker.pem", "broker.key"] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

fn files(dir: &Path, who: &str) -> TlsFiles {
    let p = |f: String| -> PathBuf { dir.join(f) };
    TlsFiles {
        ca: dir.join("ca.pem"),
        client_cert: Some(p(format!("{who}.pem"))),
        client_key: Some(p(format!("{who}.key"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_flow_over_mutual_tls_and_a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    pki(dir.path());
    let d = dir.path();
    let mosquitto = MosquittoProcess::start_tls(
        &d.join("ca.pem"),
        &d.join("broker.pem"),
        &d.join("broker.key"),
        true,
    )
    .unwrap();
    let port = mosquitto.port();

    let store = Arc::new(CentralStore::open(&d.join("central.db")).unwrap());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stored_tx, _stored_rx) = mpsc::unbounded_channel();
    let receiver = tokio::spawn(run_receiver(
        ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: port,
            client_id: "central-tls".into(),
            tls: Some(files(d, "central")),
            ..Default::default()
        },
        Arc::clone(&store),
        stored_tx,
        stop_rx.clone(),
    ));
    let outbox = Arc::new(Outbox::open(&d.join("outbox.db"), POST).unwrap());
    for n in 1..=10 {
        outbox.append(&crossing(POST, n)).unwrap();
    }
    let notify = Arc::new(Notify::new());
    let uplink = tokio::spawn(run_uplink(
        UplinkConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: port,
            client_id: "edge-tls".into(),
            post: POST.into(),
            tls: Some(files(d, "post")),
            ..Default::default()
        },
        Arc::clone(&outbox),
        Arc::clone(&notify),
        stop_rx,
    ));
    // The receiver may subscribe after the first send: the ack timeout then resends.
    let limit = bcp_sync::uplink::ACK_RESEND_AFTER + Duration::from_secs(30);
    wait_for("10 records acknowledged over TLS", limit, || {
        outbox.stats().unwrap().last_acked_seq == 10
    })
    .await;
    assert_eq!(store.export().unwrap().len(), 10);

    // Server-authenticated only (no client certificate): the broker refuses the handshake.
    let mut opts = rumqttc::MqttOptions::new("no-cert", "127.0.0.1", port);
    bcp_sync::link::apply_tls(
        &mut opts,
        &TlsFiles {
            ca: d.join("ca.pem"),
            client_cert: None,
            client_key: None,
        },
    )
    .unwrap();
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(opts, 4);
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => break false,
                Ok(_) => {}
                Err(_) => break true,
            }
        }
    })
    .await
    .unwrap();
    assert!(refused, "a client without a certificate got a CONNACK");

    stop_tx.send(true).unwrap();
    uplink.await.unwrap().unwrap();
    receiver.await.unwrap().unwrap();
}

/// The error and its sources on one line, as `{:#}` of anyhow would print them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Central's PostgreSQL over TLS: the store works through a server whose certificate the given
/// CA signed, a server signed by another CA is refused in the handshake, and a connection string
/// asking for TLS without a CA is refused with the setting to fix.
#[test]
fn central_reaches_postgresql_over_tls_only_with_the_right_ca() {
    let make = || {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        pki(dir.path());
        dir
    };
    let ours = make();
    let theirs = make();
    // The "broker" certificate names 127.0.0.1: it serves as the database server's here.
    let pg = bcp_sync::PostgresProcess::start_with_tls(
        &ours.path().join("broker.pem"),
        &ours.path().join("broker.key"),
    )
    .unwrap();

    let store = CentralStore::open_postgres_tls(&pg.url(), &ours.path().join("ca.pem")).unwrap();
    store
        .register_post_key(POST, &[7; 32], "test", chrono::Utc::now())
        .unwrap();
    let posts = store.posts().unwrap();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].post, POST);
    drop(store);

    let refused =
        CentralStore::open_postgres_tls(&pg.url(), &theirs.path().join("ca.pem")).unwrap_err();
    let why = chain(&refused);
    assert!(
        why.contains("connect") && why.contains("certificate"),
        "a server signed by another CA must fail the handshake: {why}"
    );

    let no_ca = CentralStore::open_postgres(&format!("{}?sslmode=require", pg.url())).unwrap_err();
    let why = chain(&no_ca);
    assert!(why.contains("ca_pem"), "{why}");
}
