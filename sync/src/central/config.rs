//! # `central.toml`: the central receiver's configuration file
//!
//! What an operator sets once for `bcp-central` (`/etc/bcp-central/central.toml` by default,
//! `--config FILE` otherwise). Every key is optional; a command-line flag given for the same
//! setting wins over the file, so a one-off `bcp-central export --db OTHER` still works.
//! A commented example is `sync/central.example.toml`.
//!
//! ```toml
//! [database]
//! url = "postgres://bcp-central@db.customs.local:5432/central"   # or a SQLite file path
//! ca_pem = "/etc/bcp-central/db-ca.pem"   # TLS to PostgreSQL, verified against this CA
//!
//! [broker]
//! embedded_listen = "0.0.0.0:1883"        # or: address = "mqtt.customs.local:8883"
//! client_id = "bcp-central-1"
//! share_group = "bcp-central"
//!
//! [keys]
//! dir = "/etc/bcp-central/keys"           # <POST>.pub files
//! registered_only = true
//!
//! [images]
//! dir = "/var/lib/bcp-central/images"
//! orphan_age_hours = 72                   # unreferenced images go at this age (0: never)
//!
//! [lists]
//! key_file = "/var/lib/bcp-central/lists.key"   # signs hotlists and declarations
//! ```
//!
//! Unknown keys are errors (a misspelt `ca_pem` must not silently mean "no TLS"); messages name
//! the file, the line and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Deserialize;

/// Where `bcp-central` looks when no `--config` is given; used only if the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/bcp-central/central.toml";

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralConfig {
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    #[serde(default)]
    pub images: ImagesConfig,
    #[serde(default)]
    pub lists: ListsConfig,
}

/// `[database]`: where records are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// A SQLite file path, or a `postgres://user@host:port/db` connection string (the password
    /// from `PGPASSWORD`, kept out of this file and of the process list).
    pub url: Option<String>,
    /// PostgreSQL over TLS: the CA (PEM) that signed the server's certificate. TLS is then
    /// required and the certificate must name the URL's host.
    pub ca_pem: Option<PathBuf>,
}

/// `[broker]`: where the posts' messages come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Run the embedded broker for the posts (MQTT 3.1.1) on this address.
    pub embedded_listen: Option<SocketAddr>,
    /// Or join an external MQTT 5 broker at `HOST:PORT`.
    pub address: Option<String>,
    /// The MQTT client id (stable, and different for each instance).
    pub client_id: Option<String>,
    /// The shared-subscription group of the instances that store into one database.
    pub share_group: Option<String>,
    /// TLS to the broker: its CA, and central's client certificate and key if it asks for one.
    pub tls_ca_pem: Option<PathBuf>,
    pub tls_cert_pem: Option<PathBuf>,
    pub tls_key_pem: Option<PathBuf>,
}

/// `[keys]`: the posts' public keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// A folder of `<POST>.pub` files (as `bcpctl keys show` prints them).
    pub dir: Option<PathBuf>,
    /// Reject records of posts without a registered key (default: trust on first use).
    pub registered_only: Option<bool>,
}

/// `[lists]`: the downlink lists central signs for the posts (hotlists, declarations).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListsConfig {
    /// Central's Ed25519 signing key (`bcp-central keys init` makes it; mode 0600). Posts are
    /// given its public half (`bcp-central keys show`).
    pub key_file: Option<PathBuf>,
}

/// `[images]`: where the posts' images are kept, and when orphans go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    pub dir: Option<PathBuf>,
    /// Images no stored crossing refers to are removed at this age, in hours (0: never;
    /// default [`super::orphans::DEFAULT_ORPHAN_AGE`]).
    pub orphan_age_hours: Option<u64>,
}

impl CentralConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("configuration {}", path.display()))
    }

    /// `--config FILE` if given; else [`DEFAULT_CONFIG_PATH`] if it exists; else all defaults.
    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            Some(path) => Self::load(path),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Self::load(Path::new(DEFAULT_CONFIG_PATH))
            }
            None => Ok(Self::default()),
        }
    }

    /// Parses and checks the text of a file (the error carries the line and the key).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.broker.embedded_listen.is_some() && self.broker.address.is_some() {
            bail!(
                "[broker] embedded_listen and [broker] address are both set: run the embedded \
                 broker or join an external one, not both"
            );
        }
        if let Some(address) = &self.broker.address {
            if !address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            {
                bail!("[broker] address = {address:?}: expected HOST:PORT, e.g. \"mqtt.customs.local:8883\"");
            }
        }
        if self.broker.tls_cert_pem.is_some() != self.broker.tls_key_pem.is_some() {
            bail!("[broker] tls_cert_pem and tls_key_pem go together: set both or neither");
        }
        if self.broker.tls_cert_pem.is_some() && self.broker.tls_ca_pem.is_none() {
            bail!("[broker] tls_cert_pem needs tls_ca_pem (the CA that signed the broker's certificate)");
        }
        if let (Some(url), Some(_)) = (&self.database.url, &self.database.ca_pem) {
            if !is_postgres_url(url) {
                bail!(
                    "[database] ca_pem is for PostgreSQL over TLS, but url = {url:?} is a SQLite file"
                );
            }
        }
        Ok(())
    }
}

/// Whether a database setting names PostgreSQL (else it is a SQLite file).
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;

    #[test]
    fn the_documented_example_parses_into_every_section() {
        let doc = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let c = CentralConfig::parse(&doc).unwrap();
        assert_eq!(
            c.database.url.as_deref(),
            Some("postgres://bcp-central@db.customs.local:5432/central")
        );
        assert_eq!(
            c.database.ca_pem.as_deref(),
            Some(Path::new("/etc/bcp-central/db-ca.pem"))
        );
        assert_eq!(
            c.broker.embedded_listen,
            Some("0.0.0.0:1883".parse().unwrap())
        );
        assert_eq!(c.broker.client_id.as_deref(), Some("bcp-central-1"));
        assert_eq!(c.keys.registered_only, Some(true));
        assert_eq!(
            c.images.dir.as_deref(),
            Some(Path::new("/var/lib/bcp-central/images"))
        );
        assert_eq!(c.images.orphan_age_hours, Some(72));
        assert_eq!(
            c.lists.key_file.as_deref(),
            Some(Path::new("/var/lib/bcp-central/lists.key"))
        );
    }

    #[test]
    fn the_shipped_example_file_is_valid() {
        let c = CentralConfig::parse(include_str!("../../central.example.toml")).unwrap();
        assert!(c.database.url.is_some());
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        assert_eq!(CentralConfig::parse("").unwrap(), CentralConfig::default());
    }

    #[test]
    fn a_misspelt_key_is_refused_with_its_name_and_line() {
        let err = CentralConfig::parse("[database]\nurl = \"c.db\"\nca_pm = \"x.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ca_pm") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn contradictions_are_refused_with_what_to_do() {
        let both = "[broker]\nembedded_listen = \"0.0.0.0:1883\"\naddress = \"h:1883\"\n";
        assert!(CentralConfig::parse(both)
            .unwrap_err()
            .to_string()
            .contains("not both"));
        let bad_port = "[broker]\naddress = \"mqtt.local\"\n";
        assert!(CentralConfig::parse(bad_port)
            .unwrap_err()
            .to_string()
            .contains("HOST:PORT"));
        let half = "[broker]\ntls_ca_pem = \"ca.pem\"\ntls_cert_pem = \"c.pem\"\n";
        assert!(CentralConfig::parse(half)
            .unwrap_err()
            .to_string()
            .contains("set both or neither"));
        let sqlite_tls = "[database]\nurl = \"central.db\"\nca_pem = \"ca.pem\"\n";
        assert!(CentralConfig::parse(sqlite_tls)
            .unwrap_err()
            .to_string()
            .contains("SQLite"));
    }
}
