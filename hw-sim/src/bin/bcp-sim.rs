//! `bcp-sim`: runs the simulated post until Ctrl-C (or SIGTERM).
use anyhow::{Context, Result};
use bcp_sim::{
    scenario, DimensionDevice, PostDevices, ScannerDevice, ScannerFaults, Scenario, Simulator,
    Timing,
};
use clap::Parser;
use std::path::PathBuf;

/// Simulated border-post hardware: weighbridge indicator (any protocol, --weighbridge) and
/// dimension device (--dimensions) on pseudo-terminals, a camera folder, an X-ray scanner feed. Writes DIR/endpoints.json (where the devices are) and
/// DIR/scenario.json (the vehicles it drives), then drives them once an agent connects.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Folder for the camera frames, endpoints.json and scenario.json.
    #[arg(long)]
    dir: PathBuf,
    /// Drive this many vehicles (trains on a rail post), then idle; without it, vehicles keep
    /// coming (a rail post: 3 trains).
    #[arg(long)]
    vehicles: Option<usize>,
    /// The post type: `road` (TJ/UZ/KZ plates), `rail` (trains: UIC and CIS wagon numbers,
    /// containers, per-wagon weights), `air` (ULD cargo units), `river` (vessels with ENI numbers). The
    /// agent's `[post] transport_mode` must match.
    #[arg(long, default_value = "road", value_parser = ["road", "rail", "air", "river"])]
    post: String,
    /// Rail: wagons per train.
    #[arg(long, default_value_t = 4)]
    wagons: usize,
    /// Seed of the scenario.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The post's weighbridge indicator speaks this protocol (any name `bcpctl serial read
    /// --protocol` takes but dims-ascii; polled ones answer the agent's requests). Written to
    /// endpoints.json for `bcpctl config from-sim`.
    #[arg(long, default_value = "toledo-continuous-checksum")]
    weighbridge: String,
    /// The post's dimension device: `dims-ascii` (a sensor sending computed dimensions) or
    /// `sick-cola` (a laser scanner over the lane sending raw profiles, at DIR/ttyLMS).
    #[arg(long, default_value = "dims-ascii", value_parser = DimensionDevice::parse)]
    dimensions: DimensionDevice,
    /// How the X-ray scanner reports: `feed` (JSON lines on TCP) or `drop-folder` (an XML file
    /// and a PNG image per scan in DIR/scanner, as `scanner.drop_folder` reads them).
    #[arg(long, default_value = "feed", value_parser = ScannerDevice::parse)]
    scanner: ScannerDevice,
    /// A road post's rear camera: frames of each vehicle's back in DIR/rear-camera, showing
    /// the trailer's plate (every second vehicle pulls one, a Russian trailer plate) or the
    /// truck's own plate.
    #[arg(long)]
    rear_camera: bool,
    /// Presence sensors at the bridge's entry and exit ends (presence-ascii lines on a
    /// pseudo-terminal, named in endpoints.json).
    #[arg(long)]
    presence: bool,
    /// The weighbridge is a short axle scale (road posts): each vehicle crosses it axle group
    /// by axle group, each group with its own weight (in DIR/scenario.json as `axles_kg`);
    /// endpoints.json gives the agent's `max_axle_gap_ms`.
    #[arg(long)]
    axle_scale: bool,
    /// The camera drops frames 4 times a second, of the empty lane too (a rendered empty
    /// road), so that the agent can frame vehicles by camera motion (`[camera] presence =
    /// "motion"`; endpoints.json says so).
    #[arg(long)]
    empty_lane_frames: bool,
    /// The X-ray scanner reports each scan this long after it was made (the operator's verdict
    /// comes after the vehicle left); the agent holds the crossing for it (`[lane]
    /// scan_wait_ms`).
    #[arg(long, default_value_t = 0)]
    scanner_late_ms: u64,
    /// With `--scanner drop-folder`: with every n-th scan, a bad file too (in turn: garbled
    /// XML, oversized, an image name climbing out of the folder, a duplicate), for the agent to
    /// quarantine with its reason.
    #[arg(long, default_value_t = 0)]
    scanner_bad_file_every: u32,
    /// Instead of the post, play one weighing indicator of this protocol (any name
    /// `bcpctl serial read --protocol` takes) at DIR/ttyINDICATOR, showing --weight-kg: a
    /// device to try `bcpctl serial probe/read/sniff` on. Polled protocols answer their commands.
    /// `sick-cola` plays a lane scanner with a truck passing every 15 s.
    #[arg(long)]
    indicator: Option<String>,
    #[arg(long, default_value_t = 24_560)]
    weight_kg: u32,
    /// Indicator faults: random bytes before every frame.
    #[arg(long, default_value_t = 0)]
    noise_bytes: usize,
    /// Indicator faults: every n-th frame cut in half.
    #[arg(long, default_value_t = 0)]
    truncate_every: u32,
    /// Indicator faults: every n-th frame with a wrong checksum.
    #[arg(long, default_value_t = 0)]
    bad_checksum_every: u32,
    /// Indicator faults: the vehicle rocks by this many kg (motion flag set).
    #[arg(long, default_value_t = 0)]
    rocking_kg: u32,
    /// Instead of the post, play its WAN link: a TCP proxy on --link-listen to this broker
    /// address (HOST:PORT) that cuts every connection through it again and again.
    #[arg(long)]
    link_proxy: Option<std::net::SocketAddr>,
    #[arg(long, default_value = "127.0.0.1:1884")]
    link_listen: std::net::SocketAddr,
    /// Link: after each reconnect, carry traffic this long (ms, MIN-MAX) before the next cut.
    #[arg(long, default_value = "2000-10000", value_parser = parse_range)]
    link_up_ms: (u64, u64),
    /// Link: stay down this long after each cut (ms, MIN-MAX).
    #[arg(long, default_value = "500-5000", value_parser = parse_range)]
    link_down_ms: (u64, u64),
}

/// `MIN-MAX` (or one number) in milliseconds.
fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let parse = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|e| format!("{x:?}: {e} (expected MIN-MAX in ms)"))
    };
    let (a, b) = (parse(a)?, parse(b)?);
    if a > b {
        return Err(format!("{s:?}: MIN is above MAX"));
    }
    Ok((a, b))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    if let Some(upstream) = args.link_proxy {
        return run_link_proxy(&args, upstream).await;
    }
    if let Some(protocol) = &args.indicator {
        return run_lone_indicator(&args, protocol).await;
    }
    use bcp_sim::conveyances;
    let seed = args.seed;
    if args.axle_scale && args.post != "road" {
        anyhow::bail!(
            "--axle-scale: an axle scale weighs road vehicles, not a {} post's",
            args.post
        );
    }
    let scenario = match args.post.as_str() {
        "rail" => {
            let trains =
                conveyances::generate_trains(args.vehicles.unwrap_or(3), args.wagons, seed);
            write_truth(&args.dir, &trains)?;
            Scenario::Trains(trains)
        }
        post => {
            let make = |n| match post {
                "air" => conveyances::generate_cargo_units(n, seed),
                "river" => conveyances::generate_vessels(n, seed),
                _ if args.axle_scale => scenario::on_axle_scale(scenario::generate(n, seed), seed),
                _ => scenario::generate(n, seed),
            };
            let vehicles = args.vehicles.map(make);
            if let Some(v) = &vehicles {
                write_truth(&args.dir, v)?;
            }
            Scenario::Vehicles(vehicles)
        }
    };
    let devices = PostDevices {
        indicator: args.weighbridge.clone(),
        dimensions: args.dimensions,
        scanner: args.scanner,
        rear_camera: args.rear_camera,
        presence: args.presence,
        axle_scale: args.axle_scale,
        empty_lane_frames: args.empty_lane_frames,
        scanner_faults: ScannerFaults {
            late: (args.scanner_late_ms > 0)
                .then(|| std::time::Duration::from_millis(args.scanner_late_ms)),
            bad_file_every: args.scanner_bad_file_every,
        },
    };
    let sim = Simulator::start_with(&args.dir, Timing::default(), &devices).await?;
    tracing::info!(endpoints = ?sim.endpoints(), "simulated devices open");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = tx.send(true);
    });
    sim.run_scenario(scenario, args.seed, rx).await
}

/// DIR/scenario.json: what the simulator drives, the truth to compare records with.
fn write_truth<T: serde::Serialize>(dir: &std::path::Path, truth: &T) -> Result<()> {
    let path = dir.join("scenario.json");
    std::fs::write(&path, serde_json::to_vec_pretty(truth)?)
        .with_context(|| format!("writing {}", path.display()))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `--link-proxy`: the post's WAN link, cut on a schedule until Ctrl-C.
async fn run_link_proxy(args: &Args, upstream: std::net::SocketAddr) -> Result<()> {
    let proxy = bcp_sim::LinkProxy::start(args.link_listen, upstream).await?;
    let schedule = bcp_sim::CutSchedule {
        cuts: None,
        up_ms: args.link_up_ms,
        down_ms: args.link_down_ms,
        seed: args.seed,
    };
    tracing::info!(listen = %proxy.addr(), %upstream, ?schedule, "link proxy: point the post's [sync] broker here");
    // The post may take its time to connect the first time; after that, a day.
    let reconnect = std::time::Duration::from_secs(24 * 3600);
    tokio::select! {
        r = proxy.run_cuts(schedule, reconnect) => r.map(|_| ()),
        _ = wait_for_signal() => {
            tracing::info!(cuts = proxy.cuts(), carried = proxy.carried(), "link proxy stopped");
            Ok(())
        }
    }
}

/// `--indicator`: one indicator until Ctrl-C.
async fn run_lone_indicator(args: &Args, protocol: &str) -> Result<()> {
    use bcp_sim::devices::BridgeState;
    use bcp_sim::indicators::{run_indicator, Faults, PluggablePort, GENERIC_PATTERN};
    let link = args.dir.join("ttyINDICATOR");
    let port = PluggablePort::open(&link)?;
    if protocol == "sick-cola" {
        return run_lone_scanner(port, &link).await;
    }
    let protocol = bcp_drivers::AnyProtocol::parse(protocol, Some(GENERIC_PATTERN))
        .map_err(|e| anyhow::anyhow!("{e}, sick-cola"))?;
    let state = BridgeState {
        weight_kg: args.weight_kg,
        motion: false,
    };
    let faults = Faults {
        noise_bytes: args.noise_bytes,
        truncate_every: args.truncate_every,
        bad_checksum_every: args.bad_checksum_every,
        rocking_kg: args.rocking_kg,
        unplugged: false,
    };
    tracing::info!(link = %link.display(), protocol = protocol.name(), ?faults, "indicator ready");
    let (_state_tx, state_rx) = tokio::sync::watch::channel(state);
    let (_faults_tx, faults_rx) = tokio::sync::watch::channel(faults);
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = tx.send(true);
    });
    let interval = std::time::Duration::from_millis(100);
    run_indicator(port, protocol, interval, state_rx, faults_rx, rx).await
}

/// `--indicator sick-cola`: a lane scanner at 50 Hz, 6 m above the road, with a 16.5 m x 2.55 m
/// x 4 m truck passing at 2 m/s every 15 s (the first after 3 s), until Ctrl-C.
async fn run_lone_scanner(
    port: bcp_sim::indicators::PluggablePort,
    link: &std::path::Path,
) -> Result<()> {
    use bcp_sim::lms::{run_lms_scanner, LmsLane, LmsVehicle};
    tracing::info!(link = %link.display(), "lane scanner ready (sick-cola, 6000 mm above the road)");
    let (vehicles_tx, vehicles) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let truck = LmsVehicle {
            length_mm: 16_500.0,
            width_mm: 2_550.0,
            height_mm: 4_000.0,
            speed_mm_per_s: 2_000.0,
        };
        // The first truck after 3 s, so that a reader started with the simulator sees it whole.
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            if vehicles_tx.send(truck).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(12)).await;
        }
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = tx.send(true);
    });
    let tick = std::time::Duration::from_millis(20);
    run_lms_scanner(port, LmsLane::default(), tick, vehicles, rx).await
}
