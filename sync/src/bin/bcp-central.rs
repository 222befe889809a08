//! `bcp-central`: the central office's receiver. Thin: parses arguments, calls `bcp_sync`.
//!
//! - `bcp-central serve --db (PATH | postgres://USER@HOST:PORT/DB) (--embedded-broker ADDR | --broker HOST:PORT)
//!   [--share-group G] [--client-id ID] [--expect N] [--timeout-secs S]
//!   [--post-key POST=PUBKEY_FILE ...] [--keys-dir DIR] [--registered-keys-only]
//!   [--tls-ca PEM [--tls-cert PEM --tls-key PEM]] [--blob-dir DIR] [--orphan-image-age-hours H]`:
//!   also prunes orphan images (no stored crossing refers to them, older than H hours, default
//!   `[images] orphan_age_hours`, else 72; 0: never) at start and every hour
//!   ([`bcp_sync::central::orphans`])
//! - `bcp-central images prune --db PATH [--blob-dir DIR] [--older-than-hours H] [--dry-run]`:
//!   the same prune, once, printing each orphan (`removed` or `would remove`) and a summary
//! - `bcp-central export --db PATH --json [--post P] [--since RFC3339] [--blob-dir DIR]`: a
//!   crossing with images also gets `image_states` (`stored`, `evicted_at_post`, `pending`);
//!   `--names wco` prints each crossing in the names of the WCO data model / NCTS phase 5
//!   (`bcp_record::wco`: transport means, transport equipment, mode of transport at the border,
//!   customs office at border reference; the rest under `other`) instead of the record's own
//! - `bcp-central posts --db PATH [--json]`
//! - `bcp-central audit --db PATH [--post P] [--since RFC3339] [--json]`: the posts' config
//!   changes (`bcpctl config set | apply`), as their records reported them
//! - `bcp-central verify --db PATH`
//! - `bcp-central keys init|show [--key-file PATH]`: central's list-signing key
//! - `bcp-central lists publish --post P [--post P2 ...] --kind hotlist|declarations|... [--version N]
//!   [--broker HOST:PORT] ENTRIES.json`: sign and publish a downlink list, retained
//!
//! `--db` (alias `--database`) everywhere: a SQLite file (the default store), or a PostgreSQL
//! URL (`postgres://` or `postgresql://`; the password from `PGPASSWORD` if the URL has none),
//! with `--db-ca PEM` for TLS to PostgreSQL.
//!
//! `--config FILE` (default `/etc/bcp-central/central.toml` if it exists): the same settings in
//! a file ([`bcp_sync::central::config`], example `sync/central.example.toml`); a flag given on
//! the command line wins over the file.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bcp_sync::central::blobs::{blob_dir_for, CentralBlobs};
use bcp_sync::central::config::{is_postgres_url, CentralConfig};
use bcp_sync::central::orphans;
use bcp_sync::{run_receiver, start_embedded, CentralStore, ReceiverConfig};
use clap::{Args, Parser, Subcommand};
use tokio::sync::{mpsc, watch};

#[derive(Debug, Parser)]
#[command(
    name = "bcp-central",
    version,
    about = "Central office receiver for bcp-edge posts"
)]
struct Cli {
    /// The configuration file (default: /etc/bcp-central/central.toml, if it exists). Flags
    /// given on the command line win over it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The database options every command has (each wins over `[database]` in the config file).
#[derive(Debug, Args)]
struct DbArgs {
    /// The central database: a SQLite file (created if missing) or a postgres:// URL
    /// (default: `[database] url` of the config file).
    #[arg(long, visible_alias = "database", value_name = "PATH|URL")]
    db: Option<String>,
    /// PostgreSQL over TLS, verified against this CA (PEM) (default: `[database] ca_pem`).
    #[arg(long, value_name = "PEM")]
    db_ca: Option<PathBuf>,
}

impl DbArgs {
    /// Opens the store the flags or the config file name.
    fn open(&self, config: &CentralConfig) -> anyhow::Result<CentralStore> {
        let Some(db) = self.db.as_ref().or(config.database.url.as_ref()) else {
            bail!(
                "no database: give --db PATH|URL, or set [database] url in {} (or the file given with --config)",
                bcp_sync::central::config::DEFAULT_CONFIG_PATH
            );
        };
        let ca = self.db_ca.as_ref().or(config.database.ca_pem.as_ref());
        Ok(match ca {
            Some(ca) if is_postgres_url(db) => CentralStore::open_postgres_tls(db, ca)?,
            Some(_) => bail!("--db-ca / [database] ca_pem is for PostgreSQL over TLS, but the database {db:?} is a SQLite file"),
            None => CentralStore::open_url(db)?,
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive records from the posts, store them, acknowledge them.
    Serve(Box<ServeArgs>),
    /// Print the stored crossings.
    Export(ExportArgs),
    /// Show every post: key, records stored, gaps, last contact, rejections.
    Posts(PostsArgs),
    /// Re-verify every stored record's seal and chain; exit 1 if any fails.
    Verify(VerifyArgs),
    /// Central's list-signing key: make it once, show its public half for the posts.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Downlink lists for the posts (hotlists, pre-arrival declarations), signed and retained.
    #[command(subcommand)]
    Lists(ListsCommand),
    /// The posts' configuration changes: who changed which keys, when (`bcpctl config set|apply`).
    Audit(AuditArgs),
    /// The posts' images at central.
    #[command(subcommand)]
    Images(ImagesCommand),
}

#[derive(Debug, Subcommand)]
enum ImagesCommand {
    /// Remove the images no stored crossing refers to, once older than an age.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
struct PruneArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Where the posts' images are kept (default: `[images] dir`, else `<db>.blobs`).
    #[arg(long, value_name = "DIR")]
    blob_dir: Option<PathBuf>,
    /// Only images written at least this many hours ago (their record may still be on its way)
    /// (default: `[images] orphan_age_hours`, else 72).
    #[arg(long, value_name = "H")]
    older_than_hours: Option<u64>,
    /// Only print what would be removed.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make central's signing key (refuses to overwrite one).
    Init(KeyFileArgs),
    /// Print the public key, for each post's `[sync] central_key`.
    Show(KeyFileArgs),
}

#[derive(Debug, Args)]
struct KeyFileArgs {
    /// The key file (default: `[lists] key_file` of the config file).
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ListsCommand {
    /// Sign a list and publish it, retained, to each post named (they apply it when they next
    /// connect, and keep it offline).
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// The post it is for; repeat for several posts (each gets its own signed copy).
    #[arg(long, required = true, value_name = "POST")]
    post: Vec<String>,
    /// `hotlist` (`[{"plate": "...", "reason": "..."}]`), `declarations`
    /// (`[{"plate": "...", "declaration_id": "...", "declared_gross_kg": 38500}]`), `config`
    /// (`[{"key": "limits.max_gross_kg", "value": "40000"}]`; only lane, limits, log and device
    /// sections) or another kind, passed through as it is.
    #[arg(long)]
    kind: String,
    /// The list's version; a post applies only a version newer than the one it holds
    /// (default: now, in milliseconds since 1970).
    #[arg(long)]
    version: Option<u64>,
    /// The entries, a JSON file.
    #[arg(value_name = "ENTRIES.json")]
    file: PathBuf,
    /// The broker the posts use (default: `[broker] address`, or the embedded broker's
    /// `embedded_listen`).
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
    #[command(flatten)]
    key: KeyFileArgs,
}

#[derive(Debug, Args)]
struct AuditArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Only this post's changes.
    #[arg(long)]
    post: Option<String>,
    /// Only changes recorded at or after this time (RFC 3339).
    #[arg(long, value_name = "T")]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// One JSON object per change per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Args)]
struct PostsArgs {
    #[command(flatten)]
    db: DbArgs,
    /// One JSON object per post per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").args(["embedded_broker", "broker"]))]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Run an embedded MQTT broker for the posts (MQTT 3.1.1) on this address (for example
    /// 127.0.0.1:18830); the receiver joins it over its MQTT 5 listener on another port.
    #[arg(long, value_name = "ADDR")]
    embedded_broker: Option<SocketAddr>,
    /// Connect to this MQTT 5 broker (Mosquitto 2, EMQX, HiveMQ...).
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
    /// MQTT client id; keep it stable (the broker keeps the session under it) and different for
    /// each instance (default: `[broker] client_id`, else bcp-central).
    #[arg(long)]
    client_id: Option<String>,
    /// Shared-subscription group: instances of one group (storing into one database) split the
    /// posts' records between them (default: `[broker] share_group`, else bcp-central).
    #[arg(long, value_name = "G")]
    share_group: Option<String>,
    /// Exit 0 once this many crossings were newly stored.
    #[arg(long, value_name = "N")]
    expect: Option<u64>,
    /// With --expect: exit 1 if they have not all arrived after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 120)]
    timeout_secs: u64,
    /// A post's public key file (as `bcpctl keys show` prints it); repeatable.
    #[arg(long, value_name = "POST=PUBKEY_FILE")]
    post_key: Vec<String>,
    /// A folder of `<POST>.pub` public key files.
    #[arg(long, value_name = "DIR")]
    keys_dir: Option<PathBuf>,
    /// Where the posts' images are kept (default: `<db>.blobs`).
    #[arg(long, value_name = "DIR")]
    blob_dir: Option<PathBuf>,
    /// Remove images no stored crossing refers to once they are this many hours old, at start
    /// and every hour (0: never; default: `[images] orphan_age_hours`, else 72).
    #[arg(long, value_name = "H")]
    orphan_image_age_hours: Option<u64>,
    /// TLS to the broker: the CA (PEM) that signed its certificate.
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// With --tls-ca: central's client certificate (PEM), for brokers that require one.
    #[arg(long, value_name = "PEM", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// With --tls-cert: its private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Reject records of posts without a registered key (default: pin the key of a post's
    /// first record, trust on first use).
    #[arg(long)]
    registered_keys_only: bool,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    db: DbArgs,
    /// One JSON object per line (the only format so far).
    #[arg(long, required = true)]
    json: bool,
    /// Only this post's crossings.
    #[arg(long)]
    post: Option<String>,
    /// Only crossings recorded at or after this time (RFC 3339, e.g. 2026-11-21T00:00:00Z).
    #[arg(long, value_name = "T")]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the posts' images are kept (default: `<db>.blobs`).
    #[arg(long, value_name = "DIR")]
    blob_dir: Option<PathBuf>,
    /// The names of the crossing's fields: the record's own (`record`, default) or those of
    /// the WCO data model / NCTS phase 5 (`wco`).
    #[arg(long, value_enum, default_value = "record")]
    names: FieldNames,
}

/// How `export` names a crossing's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FieldNames {
    /// As the record is signed (`plate`, `transport_mode`, ..).
    Record,
    /// The WCO data model / NCTS phase 5 names (`bcp_record::wco`).
    Wco,
}

/// The orphan image age: the flag, else `[images] orphan_age_hours`, else the default; in hours.
fn orphan_age_hours(flag: Option<u64>, config: &CentralConfig) -> u64 {
    flag.or(config.images.orphan_age_hours)
        .unwrap_or(orphans::DEFAULT_ORPHAN_AGE.as_secs() / 3600)
}

/// `bcp-central posts` calls a device that has sent nothing for this long `silent`.
const DEVICE_SILENT_AFTER_SECS: u64 = 600;

fn main() -> ExitCode {
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with(bcp_sync::logging::output_layer())
            .init();
    }
    let cli = Cli::parse();
    let result = CentralConfig::load_or_default(cli.config.as_deref()).and_then(|config| match cli
        .command
    {
        Command::Serve(args) => serve(*args, config),
        Command::Export(args) => export(&args, &config),
        Command::Posts(args) => posts(&args, &config),
        Command::Verify(args) => verify(&args, &config),
        Command::Keys(cmd) => keys(&cmd, &config),
        Command::Lists(ListsCommand::Publish(args)) => publish_lists(&args, &config),
        Command::Audit(args) => audit(&args, &config),
        Command::Images(ImagesCommand::Prune(args)) => prune_images(&args, &config),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bcp-central: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn export(args: &ExportArgs, config: &CentralConfig) -> anyhow::Result<()> {
    let store = args.db.open(config)?;
    let blobs = CentralBlobs::new(
        args.blob_dir
            .clone()
            .or_else(|| config.images.dir.clone())
            .unwrap_or_else(|| blob_dir_for(store.location())),
    );
    let mut out = std::io::stdout().lock();
    for crossing in store.export_filtered(args.post.as_deref(), args.since)? {
        let mut json = serde_json::to_value(&crossing).context("encoding JSON")?;
        if let (FieldNames::Wco, Some(obj)) = (args.names, json.as_object_mut()) {
            obj.insert(
                "crossing".into(),
                bcp_record::wco::crossing(&crossing.crossing),
            );
        }
        let images = &crossing.crossing.images;
        if let (false, Some(obj)) = (images.is_empty(), json.as_object_mut()) {
            let states: Vec<serde_json::Value> = images
                .iter()
                .map(|image| {
                    let mut state =
                        serde_json::to_value(blobs.state(image)).unwrap_or(serde_json::Value::Null);
                    if let Some(s) = state.as_object_mut() {
                        s.insert("sha256".into(), image.sha256.clone().into());
                        s.insert("kind".into(), image.kind.as_str().into());
                    }
                    state
                })
                .collect();
            obj.insert("image_states".into(), states.into());
        }
        serde_json::to_writer(&mut out, &json).context("writing JSON")?;
        out.write_all(b"\n").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")
}

/// The blob directory: the flag, else `[images] dir`, else beside the store.
fn blob_dir(flag: Option<&PathBuf>, config: &CentralConfig, store: &CentralStore) -> PathBuf {
    flag.cloned()
        .or_else(|| config.images.dir.clone())
        .unwrap_or_else(|| blob_dir_for(store.location()))
}

fn prune_images(args: &PruneArgs, config: &CentralConfig) -> anyhow::Result<()> {
    let store = args.db.open(config)?;
    let blobs = CentralBlobs::new(blob_dir(args.blob_dir.as_ref(), config, &store));
    let hours = orphan_age_hours(args.older_than_hours, config);
    let age = Duration::from_secs(hours.saturating_mul(3600));
    let report = orphans::prune_orphan_images(
        &store,
        &blobs,
        std::time::SystemTime::now(),
        age,
        args.dry_run,
    )?;
    let mut out = std::io::stdout().lock();
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for sha256 in &report.orphans {
        writeln!(out, "{verb} {sha256}").context("writing to stdout")?;
    }
    writeln!(
        out,
        "{} images examined in {}: {} referenced, {} unreferenced but younger than {} h, {} orphans {verb} ({} bytes)",
        report.examined,
        blobs.dir().root().display(),
        report.referenced,
        report.too_young,
        hours,
        report.removed,
        report.removed_bytes
    )
    .context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

fn audit(args: &AuditArgs, config: &CentralConfig) -> anyhow::Result<()> {
    let store = args.db.open(config)?;
    let mut out = std::io::stdout().lock();
    for stored in store.config_changes(args.post.as_deref(), args.since)? {
        if args.json {
            serde_json::to_writer(&mut out, &stored).context("writing JSON")?;
            out.write_all(b"\n").context("writing to stdout")?;
            continue;
        }
        let c = &stored.change;
        writeln!(
            out,
            "{} seq {}  {}  {} ran bcpctl config {} on {} (sha256 {})",
            stored.post,
            stored.seq,
            c.at.format("%Y-%m-%d %H:%M:%S UTC"),
            c.user,
            c.command,
            c.file,
            c.sha256.get(..12).unwrap_or(&c.sha256)
        )
        .context("writing to stdout")?;
        for k in &c.changes {
            writeln!(
                out,
                "    {}: {} -> {}",
                k.key,
                k.old.as_deref().unwrap_or("(absent)"),
                k.new.as_deref().unwrap_or("(removed)")
            )
            .context("writing to stdout")?;
        }
    }
    out.flush().context("writing to stdout")
}

fn verify(args: &VerifyArgs, config: &CentralConfig) -> anyhow::Result<()> {
    let store = args.db.open(config)?;
    let bcp_sync::central::VerifyReport { checked, problems } = store.verify_all()?;
    for (post, seq, what) in &problems {
        println!("FAIL {post} #{seq}: {what}");
    }
    if problems.is_empty() {
        println!("ok: {checked} records verified");
        Ok(())
    } else {
        bail!("{} of {checked} records fail verification", problems.len())
    }
}

fn posts(args: &PostsArgs, config: &CentralConfig) -> anyhow::Result<()> {
    let store = args.db.open(config)?;
    let mut out = std::io::stdout().lock();
    for p in store.posts()? {
        if args.json {
            let mut v = serde_json::to_value(&p).context("encoding a post")?;
            v["chain_state"] = p.chain_state().into();
            serde_json::to_writer(&mut out, &v).context("writing JSON")?;
            out.write_all(b"\n").context("writing to stdout")?;
        } else {
            let gaps: Vec<String> = p.gaps.iter().map(|(a, b)| format!("{a}-{b}")).collect();
            writeln!(
                out,
                "{} chain={} stored={} contiguous={} highest={} gaps=[{}] rejected={} last_contact={} {} key={}",
                p.post,
                p.chain_state(),
                p.stored,
                p.contiguous_up_to,
                p.highest_seq,
                gaps.join(","),
                p.rejected,
                p.last_contact.map_or("-".to_owned(), |t| t.to_rfc3339()),
                p.status.as_ref().map_or("status=-".to_owned(), |s| format!(
                    "status={:?} backlog={} oldest_unsynced={} devices=[{}]",
                    s.state,
                    s.depth.map_or("-".to_owned(), |d| d.to_string()),
                    s.oldest_unsynced_age_secs.map_or("-".to_owned(), |a| format!("{a}s")),
                    s.devices
                        .iter()
                        .map(|d| format!("{}:{}", d.name, d.state(DEVICE_SILENT_AFTER_SECS)))
                        .collect::<Vec<_>>()
                        .join(","),
                )),
                p.public_key.as_deref().unwrap_or("-"),
            )
            .context("writing to stdout")?;
        }
    }
    out.flush().context("writing to stdout")
}

fn key_file(args: &KeyFileArgs, config: &CentralConfig) -> anyhow::Result<PathBuf> {
    args.key_file
        .clone()
        .or_else(|| config.lists.key_file.clone())
        .context("no key file: give --key-file PATH, or set [lists] key_file in the config file")
}

/// TLS to the broker as `[broker]` of the config file sets it.
fn config_tls(config: &CentralConfig) -> Option<bcp_sync::TlsFiles> {
    config
        .broker
        .tls_ca_pem
        .as_ref()
        .map(|ca| bcp_sync::TlsFiles {
            ca: ca.clone(),
            client_cert: config.broker.tls_cert_pem.clone(),
            client_key: config.broker.tls_key_pem.clone(),
        })
}

/// A broker given as `HOST:PORT` (flag or config file).
fn host_port(hp: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = hp
        .rsplit_once(':')
        .with_context(|| format!("broker {hp:?}: expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("broker {hp:?}: {port:?} is not a port number"))?;
    Ok((host.to_owned(), port))
}

fn keys(cmd: &KeysCommand, config: &CentralConfig) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Init(args) => {
            let path = key_file(args, config)?;
            let key = bcp_sync::PostKey::init(&path)?;
            println!("{}", key.public_hex());
            eprintln!(
                "central's list-signing key written to {} (mode 0600); give each post the public key above as [sync] central_key",
                path.display()
            );
        }
        KeysCommand::Show(args) => {
            let path = key_file(args, config)?;
            println!("{}", bcp_sync::PostKey::load(&path)?.public_hex());
        }
    }
    Ok(())
}

fn publish_lists(args: &PublishArgs, config: &CentralConfig) -> anyhow::Result<()> {
    use bcp_record::lists::{parse_entries, DownlinkList};
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let entries: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.file.display()))?;
    parse_entries(&args.kind, &entries).map_err(|why| {
        anyhow::anyhow!(
            "{}: not a valid {} list: {why}",
            args.file.display(),
            args.kind
        )
    })?;
    if args.kind.is_empty()
        || !args
            .kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("--kind {:?}: letters, digits, '-' and '_' only", args.kind);
    }
    let key = bcp_sync::PostKey::load(&key_file(&args.key, config)?)?;
    let (host, port) = match (&args.broker, &config.broker.address, &config.broker.embedded_listen)
    {
        (Some(hp), _, _) | (None, Some(hp), _) => host_port(hp)?,
        (None, None, Some(addr)) => {
            let host = if addr.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                addr.ip().to_string()
            };
            (host, addr.port())
        }
        (None, None, None) => bail!(
            "no broker: give --broker HOST:PORT, or set [broker] address or embedded_listen in the config file"
        ),
    };
    let tls = config_tls(config);
    let version = args.version.unwrap_or_else(|| {
        u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    for post in &args.post {
        let mut list = DownlinkList {
            post: post.clone(),
            kind: args.kind.clone(),
            version,
            issued_at: chrono::Utc::now(),
            entries: entries.clone(),
            key: String::new(),
            sig: String::new(),
        };
        list.sign(key.signing_key());
        runtime
            .block_on(bcp_sync::lists::publish_list(
                &host,
                port,
                tls.as_ref(),
                &format!("bcp-central-lists-{}", std::process::id()),
                &list,
            ))
            .with_context(|| format!("publishing the {} list for {post}", args.kind))?;
        println!("published {} v{version} for {post}", args.kind);
    }
    Ok(())
}

/// Registers the keys given on the command line before anything is received.
fn register_keys(
    store: &CentralStore,
    args: &ServeArgs,
    config: &CentralConfig,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    for spec in &args.post_key {
        let (post, file) = spec
            .split_once('=')
            .with_context(|| format!("--post-key {spec:?}: expected POST=PUBKEY_FILE"))?;
        let key = bcp_sync::keys::read_public_key(std::path::Path::new(file))?;
        store.register_post_key(post, &key, &format!("--post-key {file}"), now)?;
    }
    if let Some(dir) = args.keys_dir.as_ref().or(config.keys.dir.as_ref()) {
        for (post, key) in bcp_sync::keys::read_keys_dir(dir)? {
            store.register_post_key(&post, &key, "keys dir", now)?;
        }
    }
    Ok(())
}

fn serve(args: ServeArgs, config: CentralConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_async(args, config))
}

async fn serve_async(args: ServeArgs, config: CentralConfig) -> anyhow::Result<()> {
    let mut store = args.db.open(&config)?;
    if args.registered_keys_only || config.keys.registered_only == Some(true) {
        store.set_key_policy(bcp_sync::KeyPolicy::RegisteredOnly);
    }
    register_keys(&store, &args, &config)?;
    let store = Arc::new(store);
    // The command line wins; a flag for one broker kind replaces the file's choice entirely.
    let (embedded_broker, broker) = match (&args.embedded_broker, &args.broker) {
        (None, None) => (config.broker.embedded_listen, config.broker.address.clone()),
        (embedded, broker) => (*embedded, broker.clone()),
    };
    // Held for the whole run: the embedded broker's thread lives until the process exits.
    let (broker_host, broker_port, _embedded) = match (&embedded_broker, &broker) {
        (Some(addr), _) => {
            let broker = start_embedded(*addr)?;
            let v5 = broker.v5_addr();
            (v5.ip().to_string(), v5.port(), Some(broker))
        }
        (None, Some(hp)) => {
            let (host, port) = host_port(hp)?;
            (host, port, None)
        }
        (None, None) => bail!(
            "no broker: give --embedded-broker ADDR or --broker HOST:PORT, or set [broker] \
             embedded_listen or address in the config file"
        ),
    };
    // TLS settings come as a set, from the flags or from the file, never mixed.
    let tls = match &args.tls_ca {
        Some(ca) => Some(bcp_sync::TlsFiles {
            ca: ca.clone(),
            client_cert: args.tls_cert.clone(),
            client_key: args.tls_key.clone(),
        }),
        None => config_tls(&config),
    };
    let blobs_root = blob_dir(args.blob_dir.as_ref(), &config, &store);
    let cfg = ReceiverConfig {
        blob_dir: Some(blobs_root.clone()),
        broker_host,
        broker_port,
        client_id: args
            .client_id
            .clone()
            .or(config.broker.client_id.clone())
            .unwrap_or_else(|| "bcp-central".to_owned()),
        share_group: args
            .share_group
            .clone()
            .or(config.broker.share_group.clone())
            .unwrap_or_else(|| bcp_sync::central::receiver::DEFAULT_SHARE_GROUP.to_owned()),
        tls,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (stored_tx, mut stored_rx) = mpsc::unbounded_channel();
    let orphan_hours = orphan_age_hours(args.orphan_image_age_hours, &config);
    let pruner = (orphan_hours > 0).then(|| {
        let age = Duration::from_secs(orphan_hours.saturating_mul(3600));
        tokio::spawn(prune_every_hour(
            Arc::clone(&store),
            CentralBlobs::new(blobs_root),
            age,
        ))
    });
    let mut receiver = tokio::spawn(run_receiver(cfg, store, stored_tx, shutdown_rx));

    let deadline = args
        .expect
        .map(|_| tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs));
    let mut count: u64 = 0;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let outcome: anyhow::Result<()> = loop {
        if args.expect.is_some_and(|n| count >= n) {
            // Give the last acknowledgements time to reach the post before disconnecting.
            tokio::time::sleep(Duration::from_secs(1)).await;
            break Ok(());
        }
        tokio::select! {
            crossing = stored_rx.recv() => match crossing {
                Some(crossing) => {
                    count += 1;
                    println!("{}", crossing.summary());
                }
                None => break Ok(()), // the receiver ended; its result is collected below
            },
            () = sleep_until_opt(deadline) => {
                break Err(anyhow::anyhow!(
                    "timed out after {} s: {count} of {} expected crossings stored",
                    args.timeout_secs,
                    args.expect.unwrap_or_default()
                ));
            }
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
        }
    };
    let _ = shutdown_tx.send(true);
    if let Some(pruner) = pruner {
        pruner.abort();
    }
    let joined = tokio::time::timeout(Duration::from_secs(5), &mut receiver).await;
    let receiver_result = match joined {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) => Err(anyhow::anyhow!("the receiver task failed: {join_error}")),
        Err(_) => {
            receiver.abort();
            Err(anyhow::anyhow!("the receiver did not stop within 5 s"))
        }
    };
    outcome?;
    receiver_result?;
    if let Some(n) = args.expect {
        if count < n {
            bail!("the receiver stopped after {count} of {n} expected crossings");
        }
    }
    Ok(())
}

/// Prunes orphan images now and every [`orphans::PRUNE_EVERY`]; a failed prune is logged and
/// tried again next time (the images stay: nothing is lost by waiting).
async fn prune_every_hour(store: Arc<CentralStore>, blobs: CentralBlobs, age: Duration) {
    let mut every = tokio::time::interval(orphans::PRUNE_EVERY);
    loop {
        every.tick().await;
        let (store, blobs) = (Arc::clone(&store), blobs.clone());
        let pruned = tokio::task::spawn_blocking(move || {
            orphans::prune_orphan_images(&store, &blobs, std::time::SystemTime::now(), age, false)
        })
        .await;
        match pruned {
            Ok(Ok(_report)) => {} // logged by the prune
            Ok(Err(error)) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "orphan image prune failed; trying again in an hour"
                );
            }
            Err(error) => tracing::warn!(%error, "orphan image prune task failed"),
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
