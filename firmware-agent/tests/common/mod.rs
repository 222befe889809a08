//! The end-to-end harness: simulated post -> the real `bcp-agent` binary -> an MQTT broker ->
//! the central receiver, with a real SQLite outbox and central database.

use anyhow::{bail, Context, Result};
use bcp_agent::sim_config;
use bcp_sim::{scenario, BadScanFile, PostDevices, ScannerDevice, Simulator, Timing};
use bcp_sync::central::{self, CentralStore, ReceiverConfig, StoredCrossing};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The `bcp-agent` process, stopped with SIGTERM (then killed) when dropped.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    /// Starts the agent as systemd would: with `NOTIFY_SOCKET` and a 2 s `WATCHDOG_USEC`.
    pub fn start(config: &Path, log: &Path, notify_socket: &Path) -> Result<Self> {
        let log = std::fs::File::create(log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_bcp-agent"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,bcp_agent=debug")
            .env("NOTIFY_SOCKET", notify_socket)
            .env("WATCHDOG_USEC", "2000000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting bcp-agent")?;
        Ok(Self { child })
    }

    /// The process id (to send it signals).
    #[allow(dead_code)] // used by the test files that send signals, not by all
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; the exit status if it came.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if self.terminate(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `n` vehicles through the whole chain against the broker at `broker_port` (central's
/// receiver on its MQTT 5 port `central_port`), and checks that central holds exactly the
/// scenario's crossings.
#[allow(dead_code)] // used by the e2e tests over brokers, not by the images test
pub async fn run_scenario(broker_port: u16, central_port: u16, n: usize, seed: u64) -> Result<()> {
    run_scenario_with(
        broker_port,
        central_port,
        n,
        seed,
        ScannerDevice::Feed,
        None,
    )
    .await
}

/// What central received of the crossings' images, checked by the caller before the agent
/// stops: `check(stored crossings, central's blob folder)`; `Ok(false)`: not all there yet.
pub type ImageCheck = fn(&[StoredCrossing], &Path) -> Result<bool>;

/// [`run_scenario`] with the simulated scanner reporting as `scanner`, and, with `images`,
/// waiting (up to 30 s) until the images check passes before the agent is stopped.
pub async fn run_scenario_with(
    broker_port: u16,
    central_port: u16,
    n: usize,
    seed: u64,
    scanner: ScannerDevice,
    images: Option<ImageCheck>,
) -> Result<()> {
    let devices = PostDevices {
        scanner,
        ..PostDevices::default()
    };
    let vehicles = scenario::generate(n, seed);
    run_scenario_on(broker_port, central_port, vehicles, seed, &devices, images).await
}

/// [`run_scenario_with`] `vehicles` on a post with `devices`: central must hold a crossing for
/// each vehicle that does not reverse off, and none for one that does; with a rear camera, each
/// with its trailer's plate (and none for a rigid truck).
pub async fn run_scenario_on(
    broker_port: u16,
    central_port: u16,
    vehicles: Vec<scenario::Vehicle>,
    seed: u64,
    devices: &PostDevices,
    images: Option<ImageCheck>,
) -> Result<()> {
    let n = vehicles.iter().filter(|v| !v.reverses).count();
    let (rear, presence) = (devices.rear_camera, devices.presence);
    let late_scans = devices.scanner_faults.late.is_some();
    let scanner_faults = devices.scanner_faults;
    let dir = tempfile::tempdir()?;
    let blob_dir = dir.path().join("central.blobs");
    let post = "TJ-TEST-01";

    // Central.
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db"))?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stored_tx, mut stored_rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(central::run_receiver(
        ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: central_port,
            client_id: format!("central-test-{seed}"),
            blob_dir: Some(blob_dir.clone()),
            ..Default::default()
        },
        store.clone(),
        stored_tx,
        stop_rx.clone(),
    ));

    // The simulated post.
    let sim = Simulator::start_with(&dir.path().join("sim"), Timing::default(), devices).await?;
    let drop_folder = sim.endpoints().scanner_drop_folder.clone();
    let cfg = sim_config::for_simulator(
        sim.endpoints(),
        post,
        "127.0.0.1",
        broker_port,
        &dir.path().join("agent"),
    );
    std::fs::create_dir_all(dir.path().join("agent"))?;
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg)?)?;
    let sim_task = tokio::spawn(sim.run(Some(vehicles.clone()), seed, stop_rx.clone()));

    // The agent, as a process, with a notify socket standing in for systemd.
    let notify_path = dir.path().join("notify.sock");
    let notify = NotifyListener::bind(&notify_path)?;
    let log = dir.path().join("agent.log");
    let mut agent = AgentProcess::start(&cfg_path, &log, &notify_path)?;

    // Wait for n crossings at central, then a little longer: nothing more may arrive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60 + 8 * n as u64);
    let mut arrived = 0;
    let outcome: Result<()> = async {
        while arrived < n {
            match tokio::time::timeout_at(deadline, stored_rx.recv()).await {
                Ok(Some(_)) => arrived += 1,
                Ok(None) => bail!("the central receiver stopped"),
                Err(_) => bail!("only {arrived} of {n} crossings reached central in time"),
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Some(check_images) = images {
            // Images travel apart from the records: wait for them, then check them.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !check_images(&store.export()?, &blob_dir)? {
                if tokio::time::Instant::now() >= deadline {
                    bail!("central did not get every image within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }
    .await;

    let status = agent.terminate(Duration::from_secs(10));
    // The agent's goodbye status carries its device board: central must have it.
    let devices = wait_for_goodbye(&store, post).await;
    let _ = stop_tx.send(true);
    let _ = sim_task.await;
    let _ = receiver.await;
    let checked = outcome
        .and_then(|()| check(&store.export()?, &vehicles, post, rear, late_scans))
        .and_then(|()| match &drop_folder {
            Some(folder) => check_quarantine(folder, &vehicles, scanner_faults),
            None => Ok(()),
        });
    if let Err(e) = checked {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        // Frames with nothing read (an empty lane's, several a second) would crowd out the
        // lane's inputs and decisions.
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .filter(|l| !l.contains("reads=None"))
            .take(120)
            .collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{e:#}\n--- agent log (last lines) ---\n{}", tail.join("\n"));
    }
    if images.is_some() {
        // The per-crossing image figures (images, image_bytes, images_ms) for BENCHMARKS.md;
        // shown with --nocapture.
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("images_ms")) {
            println!("{line}");
        }
    }
    let devices = devices?;
    let kinds: Vec<&str> = devices.iter().map(|d| d.kind.as_str()).collect();
    let want: Vec<&str> = ["weighbridge", "dimensions"]
        .into_iter()
        .chain(presence.then_some("presence"))
        .chain(["camera"])
        .chain(rear.then_some("camera"))
        .chain(["scanner"])
        .collect();
    assert_eq!(kinds, want, "{devices:?}");
    for d in &devices {
        // Every device delivered during the run; the serial ones were open and decoding.
        assert!(d.last_seen_secs.is_some(), "{d:?}");
        if ["weighbridge", "dimensions", "presence"].contains(&d.kind.as_str()) {
            assert_eq!(d.connected, Some(true), "{d:?}");
            assert!(d.frames_ok > 0, "{d:?}");
        }
        assert!(d.alarms.is_empty(), "{d:?}");
    }
    let status = status.context("bcp-agent did not stop within 10 s of SIGTERM")?;
    assert!(status.success(), "bcp-agent exited with {status}");

    // What systemd would have been told: READY once, watchdog pings, STOPPING at the end.
    let said = notify.finish();
    assert_eq!(
        said.iter().filter(|m| m.contains("READY=1")).count(),
        1,
        "{said:?}"
    );
    assert!(
        said.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2,
        "{said:?}"
    );
    assert!(
        said.last().is_some_and(|m| m.contains("STOPPING=1")),
        "{said:?}"
    );
    Ok(())
}

/// Waits (up to 10 s) until central holds the post's offline status; returns its devices.
async fn wait_for_goodbye(
    store: &CentralStore,
    post: &str,
) -> Result<Vec<bcp_record::DeviceStatus>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = store
            .posts()?
            .into_iter()
            .find(|p| p.post == post)
            .and_then(|p| p.status);
        if let Some(s) = status.filter(|s| s.state == bcp_record::PostState::Offline) {
            return Ok(s.devices);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("central never got the agent's offline status");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The drop folder after the run: every real scan processed, every bad file the simulator
/// dropped quarantined with a reason that says what was wrong with it.
fn check_quarantine(
    folder: &Path,
    vehicles: &[scenario::Vehicle],
    faults: bcp_sim::ScannerFaults,
) -> Result<()> {
    for v in vehicles.iter().filter(|v| !v.reverses) {
        let processed = folder.join("processed").join(format!("{}.xml", v.scan_id));
        if !processed.is_file() {
            bail!("scan {} was not processed", v.scan_id);
        }
    }
    let every = faults.bad_file_every as usize;
    if every == 0 {
        return Ok(());
    }
    let quarantine = folder.join("quarantine");
    for (i, v) in vehicles
        .iter()
        .filter(|v| !v.reverses)
        .enumerate()
        .filter(|(i, _)| (i + 1) % every == 0)
    {
        let bad = BadScanFile::ALL[((i + 1) / every - 1) % BadScanFile::ALL.len()];
        let mut name = bad.file_name(&v.scan_id);
        if bad == BadScanFile::Duplicate && !quarantine.join(&name).is_file() {
            // The resend may be read first; then the original is the duplicate.
            name = format!("{}.xml", v.scan_id);
        }
        let reason_file = quarantine.join(format!("{name}.reason"));
        let reason = std::fs::read_to_string(&reason_file)
            .with_context(|| format!("{name} ({bad:?}) not quarantined with a reason"))?;
        let says = match bad {
            BadScanFile::Garbled => "XML",
            BadScanFile::Oversized => "bytes",
            BadScanFile::PathTraversal => "path traversal",
            BadScanFile::Duplicate => "duplicate",
        };
        if !reason.contains(says) || !quarantine.join(&name).is_file() {
            bail!("{name} ({bad:?}): quarantined with reason {reason:?}, want one naming {says:?}");
        }
    }
    Ok(())
}

/// Central holds exactly the scenario's crossings, in order, once each; with a `rear_camera`,
/// each with its trailer's plate (a rigid truck's own rear plate is none). With `late_scans`,
/// each crossing was held for its scan and says so (`scan_joined_late`, its only flag).
fn check(
    stored: &[StoredCrossing],
    vehicles: &[scenario::Vehicle],
    post: &str,
    rear_camera: bool,
    late_scans: bool,
) -> Result<()> {
    let vehicles: Vec<&scenario::Vehicle> = vehicles.iter().filter(|v| !v.reverses).collect();
    let seqs: Vec<u64> = stored.iter().map(|s| s.seq).collect();
    let want: Vec<u64> = (1..=vehicles.len() as u64).collect();
    if seqs != want {
        bail!("central holds seqs {seqs:?}, want {want:?}");
    }
    let mut ids: Vec<_> = stored.iter().map(|s| s.crossing.id).collect();
    ids.sort();
    ids.dedup();
    if ids.len() != vehicles.len() {
        bail!("crossing ids are not unique");
    }
    for (s, v) in stored.iter().zip(vehicles) {
        let c = &s.crossing;
        let what = format!("crossing #{} (vehicle {})", s.seq, v.plate_display);
        if s.post != post || c.post != post {
            bail!("{what}: post {} / {}", s.post, c.post);
        }
        let plate = c.plate.as_ref().map(|p| p.text.as_str());
        if plate != Some(v.plate.as_str()) {
            bail!(
                "{what}: plate {plate:?}, want {}; flags {:?}",
                v.plate,
                c.flags
            );
        }
        let trailer = c.trailer_plate.as_ref().map(|p| p.text.as_str());
        let want = v.trailer_plate.as_deref().filter(|_| rear_camera);
        if trailer != want {
            bail!(
                "{what}: trailer plate {:?}, want {want:?}; flags {:?}",
                c.trailer_plate,
                c.flags
            );
        }
        if want.is_some()
            && c.trailer_plate.as_ref().and_then(|p| p.format.as_deref()) != Some("RU-TRAILER")
        {
            bail!(
                "{what}: trailer plate {:?} not as RU-TRAILER",
                c.trailer_plate
            );
        }
        let w = c
            .weight
            .as_ref()
            .with_context(|| format!("{what}: no weight; flags {:?}", c.flags))?;
        if (w.gross_kg - f64::from(v.gross_kg)).abs() > w.division_kg || w.division_kg != 20.0 {
            bail!(
                "{what}: weight {} kg (d = {}), want {} kg",
                w.gross_kg,
                w.division_kg,
                v.gross_kg
            );
        }
        if c.dimensions != Some(v.dimensions) {
            bail!(
                "{what}: dimensions {:?}, want {:?}",
                c.dimensions,
                v.dimensions
            );
        }
        let scan = c.scan.as_ref().map(|s| s.scan_id.as_str());
        if scan != Some(v.scan_id.as_str()) {
            bail!("{what}: scan {scan:?}, want {}", v.scan_id);
        }
        let flags: Vec<&str> = c.flags.iter().map(|f| f.code.as_str()).collect();
        let want: &[&str] = if late_scans {
            &["scan_joined_late"]
        } else {
            &[]
        };
        if flags != want {
            bail!("{what}: flags {:?}, want {want:?}", c.flags);
        }
    }
    Ok(())
}

/// Stands in for systemd's notify socket: collects every message on its own thread (a full
/// datagram queue would block the agent's pings).
pub struct NotifyListener {
    said: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotifyListener {
    pub fn bind(path: &Path) -> Result<Self> {
        let socket = std::os::unix::net::UnixDatagram::bind(path)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let said = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (said.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    if let Ok(mut v) = s.lock() {
                        v.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                }
            }
        });
        Ok(Self {
            said,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops listening; every message received, in order.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.said.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A loopback port that was free a moment ago, for a listener another process binds later (the
/// agent's metrics endpoint); see [`bcp_sync::loopback`].
#[allow(dead_code)] // used by some test files only
pub fn free_port() -> Result<u16> {
    bcp_sync::loopback::free_port()
}

/// Central's end of a test: the embedded broker on a free loopback port, and the receiver
/// storing into a fresh SQLite file in `dir`. Stopped by [`TestCentral::stop`]; a test that
/// fails before leaves the receiver to end with the test's runtime, and the broker closes when
/// dropped.
#[allow(dead_code)] // used by the test files that drive their own scenario, not by all
pub struct TestCentral {
    /// Where the posts connect (MQTT 3.1.1).
    pub broker_port: u16,
    pub store: Arc<CentralStore>,
    /// Every record as central stores it.
    pub stored: tokio::sync::mpsc::UnboundedReceiver<StoredCrossing>,
    stop: tokio::sync::watch::Sender<bool>,
    receiver: tokio::task::JoinHandle<Result<central::ReceiverStats>>,
    _broker: bcp_sync::EmbeddedBroker,
}

#[allow(dead_code)] // as above
impl TestCentral {
    pub fn start(dir: &Path, client_id: &str) -> Result<Self> {
        let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
        let broker_port = broker.addr().port();
        let store = Arc::new(CentralStore::open(&dir.join("central.db"))?);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (stored_tx, stored) = tokio::sync::mpsc::unbounded_channel();
        let receiver = tokio::spawn(central::run_receiver(
            ReceiverConfig {
                broker_host: "127.0.0.1".into(),
                broker_port: broker.v5_addr().port(),
                client_id: client_id.to_owned(),
                ..Default::default()
            },
            store.clone(),
            stored_tx,
            stop_rx,
        ));
        Ok(Self {
            broker_port,
            store,
            stored,
            stop,
            receiver,
            _broker: broker,
        })
    }

    /// Stops the receiver and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.receiver.await;
    }
}
