//! Bench: an idle post with two lanes. Issue 7's targets: RSS <= 40 MB, CPU <= 1 %, start to
//! READY <= 1 s.
//!
//! `cargo bench -p bcp-agent --bench idle [-- --seconds N]` (default 30 s of idling).
//!
//! An agent serves one lane (one `[post] lane`, one weighbridge), so a two-lane post runs two
//! `bcp-agent` processes: this starts two simulated lanes (`bcp-sim`'s `Simulator`, in this
//! process: two Toledo indicators sending 10 frames/s of an empty bridge on pseudo-terminals,
//! two dimension sensors, two camera folders that stay empty, two scanner feeds) and central's
//! embedded MQTT broker with the central receiver (what `bcp-central serve --embedded-broker`
//! runs, in this process too), then the release `bcp-agent` binary once per lane, one after the
//! other, as systemd would: `NOTIFY_SOCKET` (a datagram socket bound here) and
//! `WATCHDOG_USEC` of the unit's `WatchdogSec=30`. Start to READY is the wall time from the
//! spawn to the `READY=1` datagram (config, outbox, ANPR models loaded, devices opened).
//! After both are ready and a 2 s settle, it samples `/proc/PID/status` (VmRSS, VmHWM, RssAnon,
//! RssFile; Pss from `smaps_rollup`) and `/proc/PID/stat` (utime + stime) of each agent every second for N seconds, and
//! prints each agent's and the post's figures. Only the agents are measured; the simulator and
//! the broker run in this process. No vehicle comes: no ANPR load. Everything it started is
//! stopped before it returns (SIGTERM to the agents, then the devices and the broker).
use anyhow::{bail, Context, Result};
use bcp_agent::sim_config;
use bcp_sim::{Simulator, Timing};
use bcp_sync::central::{self, CentralStore, ReceiverConfig};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LANES: [&str; 2] = ["L1", "L2"];
const POST: &str = "TJ-BENCH-01";
const SETTLE: Duration = Duration::from_secs(2);

fn main() -> Result<()> {
    let mut seconds = 30u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                let v = args.next().context("--seconds needs a number")?;
                seconds = v.parse().with_context(|| format!("--seconds {v:?}"))?;
            }
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => bail!("unknown argument {other:?}; usage: idle [--seconds N]"),
        }
    }
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(seconds))
}

async fn run(seconds: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // Central: the embedded broker and the receiver.
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db"))?);
    let (stored_tx, _stored_rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(central::run_receiver(
        ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.v5_addr().port(),
            client_id: "central-bench".into(),
            ..Default::default()
        },
        store,
        stored_tx,
        stop_rx.clone(),
    ));

    // Two simulated lanes, no vehicles: the devices stay open and idle.
    let mut sims = Vec::new();
    let mut configs = Vec::new();
    for lane in LANES {
        let sim = Simulator::start(&dir.path().join(format!("sim-{lane}")), Timing::default())
            .await
            .with_context(|| format!("starting the simulated lane {lane}"))?;
        let state = dir.path().join(format!("agent-{lane}"));
        std::fs::create_dir_all(&state)?;
        let mut cfg = sim_config::for_simulator(sim.endpoints(), POST, "127.0.0.1", port, &state);
        cfg.post.lane = lane.to_owned();
        // Two agents on one broker need two client ids.
        cfg.sync.client_id = Some(format!("bcp-agent-{POST}-{lane}"));
        let path = dir.path().join(format!("agent-{lane}.toml"));
        std::fs::write(&path, toml::to_string(&cfg)?)?;
        configs.push(path);
        sims.push(tokio::spawn(sim.run(Some(Vec::new()), 1, stop_rx.clone())));
    }

    // The agents, one after the other, each timed from spawn to READY=1.
    let mut agents: Vec<LaneAgent> = Vec::new();
    let outcome: Result<Vec<Figures>> = async {
        for (lane, cfg) in LANES.iter().zip(&configs) {
            let notify = Notify::bind(&dir.path().join(format!("notify-{lane}.sock")))?;
            let log = dir.path().join(format!("agent-{lane}.log"));
            let started = Instant::now();
            let agent = Agent::start(cfg, &log, notify.path())?;
            agents.push(LaneAgent {
                lane,
                agent,
                notify,
                ready_ms: None,
            });
            let a = agents.last_mut().context("the agent just started")?;
            let ready = wait_ready(a, &log)
                .await
                .with_context(|| format!("lane {lane}: bcp-agent (pid {})", a.agent.pid()))?;
            a.ready_ms = Some(ready.duration_since(started).as_secs_f64() * 1e3);
        }
        tokio::time::sleep(SETTLE).await;
        let pids: Vec<u32> = agents.iter().map(|a| a.agent.pid()).collect();
        tokio::task::spawn_blocking(move || sample(&pids, seconds)).await?
    }
    .await;

    // Stop what was started, then report.
    let mut clean = Vec::new();
    for a in &mut agents {
        let status = a.agent.terminate(Duration::from_secs(10));
        clean.push((a.lane, status, a.notify.stop()));
    }
    let _ = stop_tx.send(true);
    for sim in sims {
        let _ = sim.await;
    }
    let _ = receiver.await;
    drop(broker);

    let figures = outcome?;
    report(seconds, &agents, &figures, &clean)
}

/// A lane's agent process and what systemd would have been told.
struct LaneAgent {
    lane: &'static str,
    agent: Agent,
    notify: Notify,
    ready_ms: Option<f64>,
}

/// One agent's figures over the idle window.
#[derive(Debug, Default)]
struct Figures {
    rss_kb: Vec<u64>,
    rss_anon_kb: u64,
    rss_file_kb: u64,
    /// Proportional set size: shared library pages divided among the processes mapping them.
    pss_kb: u64,
    hwm_kb: u64,
    threads: u64,
    cpu_secs: f64,
    cpu_secs_since_spawn: f64,
    wall_secs: f64,
}

fn report(
    seconds: u64,
    agents: &[LaneAgent],
    figures: &[Figures],
    clean: &[(&str, Option<std::process::ExitStatus>, usize)],
) -> Result<()> {
    println!(
        "idle: {} lanes (one bcp-agent each), simulated devices, no vehicles; {seconds} s sampled every 1 s after READY + {} s",
        LANES.len(),
        SETTLE.as_secs()
    );
    println!(
        "{:<6} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9} {:>8} {:>8} {:>12}",
        "lane",
        "READY ms",
        "RSS MB",
        "peak MB",
        "anon MB",
        "file MB",
        "PSS MB",
        "threads",
        "CPU %",
        "CPU s total"
    );
    let mb = |kb: u64| kb as f64 / 1024.0;
    let (mut rss_sum, mut hwm_sum, mut cpu_sum, mut ready_max) = (0.0, 0.0, 0.0, 0.0f64);
    let mut pss_sum = 0.0;
    for (a, f) in agents.iter().zip(figures) {
        let steady = median(&f.rss_kb);
        let cpu_pct = 100.0 * f.cpu_secs / f.wall_secs;
        let ready = a.ready_ms.unwrap_or(f64::NAN);
        println!(
            "{:<6} {:>9.0} {:>11.1} {:>11.1} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>8.2} {:>12.2}",
            a.lane,
            ready,
            mb(steady),
            mb(f.hwm_kb),
            mb(f.rss_anon_kb),
            mb(f.rss_file_kb),
            mb(f.pss_kb),
            f.threads,
            cpu_pct,
            f.cpu_secs_since_spawn
        );
        rss_sum += mb(steady);
        hwm_sum += mb(f.hwm_kb);
        pss_sum += mb(f.pss_kb);
        cpu_sum += cpu_pct;
        ready_max = ready_max.max(ready);
    }
    println!(
        "post   {:>9.0} {:>11.1} {:>11.1} {:>9} {:>9} {:>9.1} {:>8} {:>8.2}",
        ready_max, rss_sum, hwm_sum, "", "", pss_sum, "", cpu_sum
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let per_agent_rss = figures
        .iter()
        .map(|f| mb(median(&f.rss_kb)))
        .fold(0.0, f64::max);
    println!(
        "targets: RSS <= 40 MB: per agent {:.1} MB {}, both lanes {:.1} MB {} (PSS {:.1} MB); CPU <= 1 %: both lanes {:.2} % {}; READY <= 1 s: slowest {:.0} ms {}",
        per_agent_rss,
        verdict(per_agent_rss <= 40.0),
        rss_sum,
        verdict(rss_sum <= 40.0),
        pss_sum,
        cpu_sum,
        verdict(cpu_sum <= 1.0),
        ready_max,
        verdict(ready_max <= 1000.0)
    );
    for (lane, status, pings) in clean {
        let how = match status {
            Some(s) if s.success() => "exited 0 on SIGTERM".to_owned(),
            Some(s) => format!("exited with {s} on SIGTERM"),
            None => "killed (no exit within 10 s of SIGTERM)".to_owned(),
        };
        println!("lane {lane}: {how}; {pings} notify datagrams");
    }
    Ok(())
}

fn median(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

/// Samples every agent once a second for `seconds` seconds.
fn sample(pids: &[u32], seconds: u64) -> Result<Vec<Figures>> {
    let tick = clock_ticks()?;
    let cpu = |pid: u32| -> Result<f64> { Ok(proc_cpu_ticks(pid)? as f64 / tick) };
    let start_cpu: Vec<f64> = pids.iter().map(|&p| cpu(p)).collect::<Result<_>>()?;
    let started = Instant::now();
    let mut figures: Vec<Figures> = pids.iter().map(|_| Figures::default()).collect();
    for i in 1..=seconds {
        let next = started + Duration::from_secs(i);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        for (&pid, f) in pids.iter().zip(&mut figures) {
            let status = proc_status(pid)?;
            f.rss_kb.push(status.field("VmRSS")?);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    for ((&pid, f), c0) in pids.iter().zip(&mut figures).zip(start_cpu) {
        let total = cpu(pid)?;
        let status = proc_status(pid)?;
        f.hwm_kb = status.field("VmHWM")?;
        f.rss_anon_kb = status.field("RssAnon")?;
        f.rss_file_kb = status.field("RssFile")?;
        f.threads = status.field("Threads")?;
        let path = format!("/proc/{pid}/smaps_rollup");
        let rollup = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        f.pss_kb = ProcStatus(rollup).field("Pss")?;
        f.cpu_secs = total - c0;
        f.cpu_secs_since_spawn = total;
        f.wall_secs = wall;
    }
    Ok(figures)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux x86_64).
fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("getconf CLK_TCK printed {text:?}"))
}

/// utime + stime of `pid`, in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn proc_cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{path}: no ')' in {text:?}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .with_context(|| format!("{path}: no field {n}"))?
            .parse()
            .with_context(|| format!("{path}: field {n}"))
    };
    Ok(field(14)? + field(15)?)
}

struct ProcStatus(String);

impl ProcStatus {
    /// A numeric field (`VmRSS:   12345 kB` gives 12345).
    fn field(&self, name: &str) -> Result<u64> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .with_context(|| format!("/proc/PID/status has no {name}"))?
            .parse()
            .with_context(|| format!("/proc/PID/status {name}"))
    }
}

fn proc_status(pid: u32) -> Result<ProcStatus> {
    let path = format!("/proc/{pid}/status");
    std::fs::read_to_string(&path)
        .map(ProcStatus)
        .with_context(|| format!("reading {path} (did the agent exit?)"))
}

/// Waits up to 30 s for READY=1; fails with the log's tail if the agent exits first.
async fn wait_ready(a: &mut LaneAgent, log: &Path) -> Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(at) = a.notify.ready_at() {
            return Ok(at);
        }
        if let Some(status) = a.agent.child.try_wait()? {
            bail!("exited with {status} before READY; log:\n{}", tail(log));
        }
        if Instant::now() > deadline {
            bail!("no READY=1 within 30 s; log:\n{}", tail(log));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Stands in for systemd's notify socket: a thread receives every datagram and notes when
/// READY=1 came.
struct Notify {
    path: std::path::PathBuf,
    ready: Arc<std::sync::Mutex<Option<Instant>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Notify {
    fn bind(path: &Path) -> Result<Self> {
        let socket =
            UnixDatagram::bind(path).with_context(|| format!("binding {}", path.display()))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let ready = Arc::new(std::sync::Mutex::new(None));
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, c, s) = (ready.clone(), count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let at = Instant::now();
                    c.fetch_add(1, Ordering::Relaxed);
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.lines().any(|l| l == "READY=1") {
                        if let Ok(mut r) = r.lock() {
                            r.get_or_insert(at);
                        }
                    }
                }
            }
        });
        Ok(Self {
            path: path.to_owned(),
            ready,
            count,
            stop,
            thread: Some(thread),
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn ready_at(&self) -> Option<Instant> {
        self.ready.lock().ok().and_then(|r| *r)
    }

    /// Stops the thread; the number of datagrams received.
    fn stop(&mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The release `bcp-agent`, stopped with SIGTERM (then killed) when dropped.
struct Agent {
    child: Child,
}

impl Agent {
    fn start(config: &Path, log: &Path, notify: &Path) -> Result<Self> {
        let log = std::fs::File::create(log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_bcp-agent"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", notify)
            .env("WATCHDOG_USEC", "30000000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting bcp-agent")?;
        Ok(Self { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to `grace` for the exit; the exit status if it came (else killed).
    fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate(Duration::from_secs(5));
        }
    }
}
