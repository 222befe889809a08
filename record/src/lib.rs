//! # bcp-record: what a border post tells the central office
//!
//! The schema shared by the appliance (`bcp-agent`) and the central receiver (`bcp-central`).
//! Everything here is plain data with serde; no I/O.
//!
//! ## Layout
//! - [`Crossing`]: one vehicle's linked evidence (plate, stable weight, dimensions, X-ray scan).
//! - [`ConfigChange`]: a technician's change to the post's configuration (the audit log); it
//!   travels as a record without evidence ([`Crossing::config_change`]).
//! - [`ScanEvent`]: what a non-intrusive inspection scanner reports about one scan; the scanner
//!   feed sends it as one JSON object per line.
//! - [`RecordEnvelope`]: a crossing as it travels: the post, its per-post sequence number.
//! - [`seal`]: the per-post hash chain and Ed25519 signature on each envelope ([`seal::Seal`]).
//! - [`PostStatus`]: a post's retained birth / heartbeat / last-will message.
//! - [`lists`]: [`lists::DownlinkList`], central's signed, versioned lists for a post.
//! - [`Ack`]: central's acknowledgement, the highest contiguous sequence number it has committed.
//! - [`ImageRef`]: an image of a crossing, named by its SHA-256; the bytes travel apart
//!   ([`topics::blob`]), acknowledged one by one ([`BlobAck`]); [`BlobEvicted`] tells central an
//!   image will never come.
//! - [`topics`]: the MQTT topic names, under the versioned prefix `bcp/v1`.
//! - [`transport`]: the post's mode of transport ([`TransportMode`], UN/ECE Rec. 19) and a rail
//!   post's [`Train`] of [`Wagon`]s with their numbers, weights and containers
//!   ([`IdentifierRead`]).
//!
//! - [`wco`]: a crossing in the names of the WCO data model / NCTS phase 5, for exports.
//!
//! ## Customs names (WCO data model / EU NCTS phase 5)
//! The record's JSON names are fixed (they are signed); [`wco::crossing`] prints them in the
//! names customs systems use (`../shared/FIELD-NOTES.md`, last section), where one exists:
//!
//! | `Crossing` field | WCO / NCTS name |
//! |---|---|
//! | `id` | message identification |
//! | `post` | none (the post's own code); its office is `customs_office_at_border_reference` |
//! | `customs_office_at_border_reference` | customs office at border reference (an8) |
//! | `lane` | none |
//! | `direction` | none in the list (entry or exit, from the lane's config) |
//! | `arrived_at`, `left_at` | none (preparation date and time is the message's, not the passage's) |
//! | `plate` (road) | transport means: type of identification 30 (road vehicle registration), identification number, nationality (ISO 3166 alpha-2 of the plate's format) |
//! | `trailer_plate` (road) | transport means: type of identification 31 (road trailer registration), identification number, nationality |
//! | `plate` (river, `ENI` / `IMO`) | transport means: type of identification 80 / 10, identification number |
//! | `plate` (air, `ULD`) | transport equipment: container identification number (an..17) |
//! | `train.wagons[].number` | transport means: type of identification 20 (wagon number), identification number |
//! | `train.wagons[].containers` | transport equipment: container identification number |
//! | `transport_mode` | mode of transport at the border (UN/ECE Rec. 19 code) |
//! | `weight`, `dimensions`, `scan`, `flags`, `images`, `config_change` | none |
//!
//! Seal identifiers, UN/LOCODE and GNSS position have names there but no field here yet.
//!
//! ## Compatibility
//! Fields are only ever added, as `Option` or with `#[serde(default)]`, so an older central can
//! read a newer post's records and the reverse. A breaking change gets a new topic prefix.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod lists;
pub mod seal;
pub mod transport;
pub mod wco;

pub use transport::{IdCheck, IdentifierRead, Train, TransportMode, Wagon};

/// One vehicle's passage through a lane, with all the evidence the lane could link to it; on a
/// rail post, one train's passage ([`Crossing::train`]); on an air or river post, a cargo unit or
/// a vessel, whose identifier is in [`Crossing::plate`] with the scheme as its `format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crossing {
    /// UUID v7: unique and time-ordered.
    pub id: Uuid,
    /// The post's code (for example a UN/LOCODE plus a post suffix).
    pub post: String,
    pub lane: String,
    /// When the vehicle came onto the weighbridge.
    pub arrived_at: DateTime<Utc>,
    /// When the vehicle left the weighbridge.
    pub left_at: DateTime<Utc>,
    /// The plate the lane read, if any camera read one.
    pub plate: Option<PlateRead>,
    /// The trailer's plate (a tractor and trailer), read by a rear camera and voted over its
    /// frames like the front plate; `format` says which grammar matched (`RU-TRAILER`, ...).
    /// Never the vehicle's own plate seen again from behind (a rigid truck plated at both
    /// ends). Absent on the wire when `None`, so older records keep their encoding (and seals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailer_plate: Option<PlateRead>,
    /// The stable gross weight, if the weighbridge settled while the vehicle was on it.
    pub weight: Option<Weighing>,
    pub dimensions: Option<Dimensions>,
    pub scan: Option<ScanEvent>,
    /// What is doubtful about this record, each with its reason.
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// The images of this crossing, by content hash; the bytes travel apart from the record
    /// (`topics::blob`). Absent on the wire when empty, so older records keep their encoding
    /// (and their seals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageRef>,
    /// The mode of transport at the border (UN/ECE Rec. 19), from the post's profile. Absent on
    /// records from before post profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_mode: Option<TransportMode>,
    /// On a rail post: the train, its wagons in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<Train>,
    /// Set on a record that is not a vehicle's passage but a change to the post's configuration
    /// (the audit log of `bcpctl config set|apply`). It rides in the sealed chain so that it is
    /// signed, acknowledged and never lost like any record; such a record has no evidence,
    /// `arrived_at == left_at ==` the change's time and the flag `config_change`. Readers that
    /// count vehicles skip it. Absent on the wire when `None`, so older records keep their seals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_change: Option<ConfigChange>,
    /// Whether the conveyance was entering or leaving the country, from the lane's config
    /// (`[lane] direction`). Absent when not configured, and on older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The post's customs office (NCTS "customs office at border reference", an8, such as
    /// `TJ000123`), from the config (`[post] customs_office`). Absent when not configured, and
    /// on older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customs_office_at_border_reference: Option<String>,
}

/// Which way a crossing goes through the border.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Entering the country.
    Entry,
    /// Leaving the country.
    Exit,
}

/// Who changed which keys of a post's configuration file, when, and what the file became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// UUID v7, made when the change was written; the carrying record's id.
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// The person: `SUDO_USER`, else `LOGNAME`, else `uid N`.
    pub user: String,
    /// `set` or `apply` (`bcpctl config`), or [`ConfigChange::BY_CENTRAL`].
    pub command: String,
    /// The file written (`/etc/bcp/agent.toml`).
    pub file: String,
    /// Key by key, what the file said before and says now.
    pub changes: Vec<KeyChange>,
    /// SHA-256 of the new file, lowercase hex.
    pub sha256: String,
    /// SHA-256 of the file it replaced, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_sha256: Option<String>,
}

/// One key of a [`ConfigChange`]: dotted (`lane.close_after_ms`), values as TOML text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    pub key: String,
    /// `None`: the key was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    /// `None`: the key was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

impl ConfigChange {
    /// The `command` of a change central made with a `config` downlink list.
    pub const BY_CENTRAL: &'static str = "central";

    /// The record that carries this change through the outbox to central (see
    /// [`Crossing::config_change`]).
    pub fn to_record(&self, post: &str, lane: &str) -> Crossing {
        let keys: Vec<&str> = self.changes.iter().map(|c| c.key.as_str()).collect();
        Crossing {
            flags: vec![Flag::new(
                "config_change",
                format!(
                    "not a vehicle: {} changed {} {} ({})",
                    self.user,
                    self.file,
                    if self.command == Self::BY_CENTRAL {
                        "with a config list".to_owned()
                    } else {
                        format!("with bcpctl config {}", self.command)
                    },
                    keys.join(", ")
                ),
            )],
            config_change: Some(self.clone()),
            ..Crossing::without_evidence(self.id, post, lane, self.at)
        }
    }
}

impl Crossing {
    /// A record of `post`'s `lane` at the instant `at` that carries no vehicle evidence yet (no
    /// plate, weight, dimensions, scan, images or flags): the base of the records that are
    /// not a vehicle's passage (a scan nobody matched, a configuration change). The one place
    /// that lists every field, so that a new field is added once.
    pub fn without_evidence(id: Uuid, post: &str, lane: &str, at: DateTime<Utc>) -> Self {
        Self {
            id,
            post: post.to_owned(),
            lane: lane.to_owned(),
            arrived_at: at,
            left_at: at,
            plate: None,
            weight: None,
            dimensions: None,
            scan: None,
            flags: Vec::new(),
            images: Vec::new(),
            transport_mode: None,
            train: None,
            trailer_plate: None,
            config_change: None,
            direction: None,
            customs_office_at_border_reference: None,
        }
    }
}

/// An image a crossing refers to: a content-addressed blob, stored and sent apart from records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub kind: ImageKind,
    /// SHA-256 of the image bytes, lowercase hex (64 characters): the blob's name.
    pub sha256: String,
    /// Size of the image in bytes.
    pub bytes: u64,
    /// `image/jpeg`, `image/png`, ...
    pub media_type: String,
}

/// What an image shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// The number plate, cropped from a camera frame.
    PlateCrop,
    /// A whole camera frame of the vehicle.
    Overview,
    /// A reduced image of an X-ray / gamma scan.
    ScanThumbnail,
}

impl ImageKind {
    /// The name used in storage and in the CLI (`plate_crop`, `overview`, `scan_thumbnail`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlateCrop => "plate_crop",
            Self::Overview => "overview",
            Self::ScanThumbnail => "scan_thumbnail",
        }
    }

    /// The inverse of [`ImageKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::PlateCrop, Self::Overview, Self::ScanThumbnail]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Central's acknowledgement of one blob: it holds the bytes (checked against the hash), or it
/// noted that the post evicted the image before sending it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobAck {
    pub post: String,
    pub sha256: String,
    pub state: BlobAckState,
}

/// What a [`BlobAck`] confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobAckState {
    /// Central stored the bytes under their hash.
    Stored,
    /// Central recorded that the post evicted the image (it will never come).
    EvictionNoted,
}

/// A post telling central that it evicted an image before central had it (disk budget).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEvicted {
    pub post: String,
    pub sha256: String,
    pub evicted_at: DateTime<Utc>,
    /// Why (`budget`, `disk_full`, `too_large`).
    pub reason: String,
}

/// A number plate as read by the lane's camera(s), merged over frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlateRead {
    /// Normalised: uppercase, no spaces or dashes (`1234AB01`).
    pub text: String,
    /// 0.0 ..= 1.0.
    pub confidence: f32,
    /// The plate format that matched (`TJ`, `UZ`, `KZ`, ...), if one did.
    pub format: Option<String>,
    /// How many frames contributed a read.
    pub frames: u32,
}

/// A stable weight from the weighbridge indicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weighing {
    pub gross_kg: f64,
    /// The indicator's scale division `d`: the weight is exact to within this.
    pub division_kg: f64,
    pub stable_at: DateTime<Utc>,
    /// The device that weighed (its configured name).
    pub device: String,
}

/// Vehicle dimensions, as measured by the lane's dimension sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimensions {
    pub length_mm: u32,
    pub width_mm: u32,
    pub height_mm: u32,
}

/// One scan by an X-ray / gamma inspection scanner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanEvent {
    pub scanner_id: String,
    pub scan_id: String,
    pub scanned_at: DateTime<Utc>,
    /// The lane the scanner serves, if it says.
    #[serde(default)]
    pub lane: Option<String>,
    /// `ALARM`, `NO_ALARM` or `UNKNOWN` (the NEMA DICOS TDR vocabulary).
    pub decision: ScanDecision,
    /// File names of the scan images, as the scanner names them.
    #[serde(default)]
    pub images: Vec<String>,
    /// The conveyance id (plate, wagon or container number) the scanner operator typed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conveyance_id: Option<String>,
    /// Who made the decision: `MACHINE` or `OPERATOR` (the DICOS TDR type), if the scanner says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScanDecision {
    Alarm,
    NoAlarm,
    Unknown,
}

/// Something doubtful about a crossing, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    /// A stable code (`plate_unread`, `weight_unstable`, `no_scan`, ...).
    pub code: String,
    pub reason: String,
}

impl Flag {
    pub fn new(code: &str, reason: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A crossing as it travels from a post to central.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordEnvelope {
    pub post: String,
    /// Per-post, monotonic, starting at 1, without gaps.
    pub seq: u64,
    /// When the post committed the record to its outbox.
    pub recorded_at: DateTime<Utc>,
    pub crossing: Crossing,
    /// Hash chain and signature (schema v2); `None` only on records from before sealing existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<seal::Seal>,
}

/// Central's acknowledgement: every record of `post` with `seq <= up_to_seq` is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub post: String,
    pub up_to_seq: u64,
}

/// A post's status, published retained on `topics::status(post)`: a birth message on every
/// connect, a heartbeat every few seconds, and a last will (`state: offline`, no figures) that
/// the broker publishes if the post vanishes without saying goodbye.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostStatus {
    pub post: String,
    pub state: PostState,
    /// When the post made this message (`None` in the last will, which is made at connect time
    /// and sent by the broker later).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// Records not yet acknowledged by central.
    #[serde(default)]
    pub depth: Option<u64>,
    /// Age of the oldest unacknowledged record, in seconds.
    #[serde(default)]
    pub oldest_unsynced_age_secs: Option<u64>,
    #[serde(default)]
    pub last_seq: Option<u64>,
    #[serde(default)]
    pub last_acked_seq: Option<u64>,
    /// Bytes the outbox uses on disk.
    #[serde(default)]
    pub outbox_bytes: Option<u64>,
    /// The outbox is above the high-water mark of its disk budget (an alarm).
    #[serde(default)]
    pub outbox_high_water: Option<bool>,
    /// Bytes of image blobs held by the outbox (part of its disk budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobs_bytes: Option<u64>,
    /// Images not yet confirmed by central (and not evicted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobs_pending: Option<u64>,
    /// Images evicted by the disk budget since the outbox was created (counter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobs_evicted_total: Option<u64>,
    /// Appends refused because the outbox was full, since this process started (counter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_rejections_total: Option<u64>,
    /// The health of the lane's devices (weighbridge, dimension sensor, camera, scanner).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceStatus>,
}

/// One device's health as the post reports it in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// The device's configured name (`WB-1`, `CAM-1`...).
    pub name: String,
    /// `weighbridge`, `dimensions`, `camera` or `scanner`.
    pub kind: String,
    /// Whether its port or connection is open (`None` where the post cannot tell, as for a
    /// camera folder).
    #[serde(default)]
    pub connected: Option<bool>,
    /// Frames decoded and rejected (garbled, bad checksum, truncated) since the agent started.
    #[serde(default)]
    pub frames_ok: u64,
    #[serde(default)]
    pub frames_bad: u64,
    /// Seconds since the device last sent anything usable (`None`: never since the start).
    #[serde(default)]
    pub last_seen_secs: Option<u64>,
    /// Active alarms (`overload`, `zero_drift`...); empty when all is well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// How often the agent restarted the device's driver after it failed, since the start.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl DeviceStatus {
    /// `ok`, `alarm`, `silent` (nothing for longer than `silent_after_secs`) or `down`.
    pub fn state(&self, silent_after_secs: u64) -> &'static str {
        if self.connected == Some(false) {
            "down"
        } else if !self.alarms.is_empty() {
            "alarm"
        } else if self.last_seen_secs.is_none_or(|s| s > silent_after_secs) {
            "silent"
        } else {
            "ok"
        }
    }
}

/// Whether a post is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostState {
    Online,
    Offline,
}

/// MQTT topic names. One place, so that edge and central cannot disagree.
pub mod topics {
    /// The versioned prefix of every topic.
    pub const PREFIX: &str = "bcp/v1";

    /// Where a post publishes its records.
    pub fn records(post: &str) -> String {
        format!("{PREFIX}/{post}/records")
    }

    /// What central subscribes to for the records of every post.
    pub fn records_all() -> String {
        format!("{PREFIX}/+/records")
    }

    /// Where central acknowledges a post's records.
    pub fn ack(post: &str) -> String {
        format!("{PREFIX}/{post}/ack")
    }

    /// Where a post publishes its status (retained: birth, heartbeat, last will).
    pub fn status(post: &str) -> String {
        format!("{PREFIX}/{post}/status")
    }

    /// Where a post publishes the bytes of the image whose SHA-256 (hex) is `sha256`.
    pub fn blob(post: &str, sha256: &str) -> String {
        format!("{PREFIX}/{post}/blobs/{sha256}")
    }

    /// What central subscribes to for every post's image blobs.
    pub fn blobs_all() -> String {
        format!("{PREFIX}/+/blobs/+")
    }

    /// Where a post tells central that it evicted an image central does not have.
    pub fn blob_evicted(post: &str) -> String {
        format!("{PREFIX}/{post}/blob-evicted")
    }

    /// What central subscribes to for every post's eviction notices.
    pub fn blob_evicted_all() -> String {
        format!("{PREFIX}/+/blob-evicted")
    }

    /// Where central acknowledges a post's blobs and eviction notices.
    pub fn blob_ack(post: &str) -> String {
        format!("{PREFIX}/{post}/blob-ack")
    }

    /// The post and hash named in a blob topic, if the topic is one.
    pub fn post_and_hash_of_blob_topic(topic: &str) -> Option<(&str, &str)> {
        let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let (post, hash) = rest.split_once("/blobs/")?;
        let ok = !post.is_empty()
            && !post.contains('/')
            && hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then_some((post, hash))
    }

    /// The post named in an eviction-notice topic, if the topic is one.
    pub fn post_of_blob_evicted_topic(topic: &str) -> Option<&str> {
        let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let post = rest.strip_suffix("/blob-evicted")?;
        (!post.is_empty() && !post.contains('/')).then_some(post)
    }

    /// What central subscribes to for every post's status.
    pub fn status_all() -> String {
        format!("{PREFIX}/+/status")
    }

    /// Where central publishes (retained) a post's list of `kind`.
    pub fn list(post: &str, kind: &str) -> String {
        format!("{PREFIX}/{post}/lists/{kind}")
    }

    /// What a post subscribes to for all its lists.
    pub fn lists_of(post: &str) -> String {
        format!("{PREFIX}/{post}/lists/+")
    }

    /// The post named in a status topic, if the topic is one.
    pub fn post_of_status_topic(topic: &str) -> Option<&str> {
        let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let post = rest.strip_suffix("/status")?;
        (!post.is_empty() && !post.contains('/')).then_some(post)
    }

    /// The post named in a records topic, if the topic is one.
    pub fn post_of_records_topic(topic: &str) -> Option<&str> {
        let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let post = rest.strip_suffix("/records")?;
        (!post.is_empty() && !post.contains('/')).then_some(post)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let t = topics::records("TJDYU-01");
        assert_eq!(t, "bcp/v1/TJDYU-01/records");
        assert_eq!(topics::post_of_records_topic(&t), Some("TJDYU-01"));
        assert_eq!(topics::post_of_records_topic("bcp/v1/a/b/records"), None);
        assert_eq!(topics::post_of_records_topic("bcp/v1//records"), None);
        assert_eq!(topics::post_of_records_topic("other/x/records"), None);
        let s = topics::status("TJDYU-01");
        assert_eq!(topics::post_of_status_topic(&s), Some("TJDYU-01"));
        assert_eq!(topics::post_of_status_topic(&t), None);
        let h = "ab".repeat(32);
        let b = topics::blob("TJDYU-01", &h);
        assert_eq!(
            topics::post_and_hash_of_blob_topic(&b),
            Some(("TJDYU-01", h.as_str()))
        );
        assert_eq!(
            topics::post_and_hash_of_blob_topic("bcp/v1/TJDYU-01/blobs/../x"),
            None
        );
        let e = topics::blob_evicted("TJDYU-01");
        assert_eq!(topics::post_of_blob_evicted_topic(&e), Some("TJDYU-01"));
    }

    #[test]
    fn a_crossing_without_images_encodes_as_before_and_one_with_images_round_trips() {
        let old = r#"{"id":"019aa4c2-5a10-7c3e-9d1b-1f2e3d4c5b01","post":"P","lane":"L1","arrived_at":"2026-11-20T08:00:20Z","left_at":"2026-11-20T08:00:58Z","plate":null,"weight":null,"dimensions":null,"scan":null,"flags":[]}"#;
        let mut c: Crossing = serde_json::from_str(old).expect("old record");
        assert!(c.images.is_empty());
        assert_eq!(serde_json::to_string(&c).expect("encodes"), old);
        c.images.push(ImageRef {
            kind: ImageKind::Overview,
            sha256: "00".repeat(32),
            bytes: 3,
            media_type: "image/jpeg".to_owned(),
        });
        let json = serde_json::to_string(&c).expect("encodes");
        assert!(json.contains(r#""kind":"overview""#), "{json}");
        assert_eq!(serde_json::from_str::<Crossing>(&json).expect("decodes"), c);
        assert_eq!(
            ImageKind::parse("scan_thumbnail"),
            Some(ImageKind::ScanThumbnail)
        );
    }

    #[test]
    fn a_train_record_carries_its_mode_and_wagons_and_round_trips() {
        let old = r#"{"id":"019aa4c2-5a10-7c3e-9d1b-1f2e3d4c5b01","post":"P","lane":"T1","arrived_at":"2026-11-20T08:00:20Z","left_at":"2026-11-20T08:00:58Z","plate":null,"weight":null,"dimensions":null,"scan":null,"flags":[]}"#;
        let mut c: Crossing = serde_json::from_str(old).expect("old record");
        assert_eq!((c.transport_mode, c.train.as_ref()), (None, None));
        c.transport_mode = Some(TransportMode::Rail);
        c.train = Some(Train {
            wagons: vec![Wagon {
                position: 1,
                on_at: c.arrived_at,
                off_at: Some(c.left_at),
                number: Some(IdentifierRead {
                    text: "218124712173".into(),
                    scheme: "UIC".into(),
                    check: IdCheck::Repaired,
                    read_as: Some("218124712178".into()),
                    confidence: 0.8,
                    reads: 1,
                }),
                weight: None,
                containers: vec![],
            }],
        });
        let json = serde_json::to_string(&c).expect("encodes");
        assert!(
            json.contains(r#""transport_mode":{"code":2,"name":"rail"}"#)
                && json.contains(r#""check":"repaired""#)
                && !json.contains("containers"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Crossing>(&json).expect("decodes"), c);
    }

    #[test]
    fn a_crossing_without_a_trailer_plate_encodes_as_before_and_one_with_it_round_trips() {
        let old = r#"{"id":"019aa4c2-5a10-7c3e-9d1b-1f2e3d4c5b01","post":"P","lane":"L1","arrived_at":"2026-11-20T08:00:20Z","left_at":"2026-11-20T08:00:58Z","plate":{"text":"A123BC77","confidence":0.9,"format":"RU","frames":3},"weight":null,"dimensions":null,"scan":null,"flags":[]}"#;
        let mut c: Crossing = serde_json::from_str(old).expect("old record");
        assert_eq!(c.trailer_plate, None);
        assert_eq!(serde_json::to_string(&c).expect("encodes"), old);
        c.trailer_plate = Some(PlateRead {
            text: "AB123477".into(),
            confidence: 0.8,
            format: Some("RU-TRAILER".into()),
            frames: 2,
        });
        let json = serde_json::to_string(&c).expect("encodes");
        assert!(
            json.contains(r#""trailer_plate":{"text":"AB123477","confidence":0.8,"format":"RU-TRAILER","frames":2}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Crossing>(&json).expect("decodes"), c);
    }

    #[test]
    fn old_records_encode_as_before_and_the_border_fields_round_trip() {
        let old = r#"{"id":"019aa4c2-5a10-7c3e-9d1b-1f2e3d4c5b01","post":"P","lane":"L1","arrived_at":"2026-11-20T08:00:20Z","left_at":"2026-11-20T08:00:58Z","plate":{"text":"1234AB01","confidence":0.9,"format":"TJ","frames":2},"weight":null,"dimensions":null,"scan":null,"flags":[],"transport_mode":{"code":3,"name":"road"}}"#;
        let mut c: Crossing = serde_json::from_str(old).expect("old record");
        assert_eq!(
            (c.direction, c.customs_office_at_border_reference.as_ref()),
            (None, None)
        );
        assert_eq!(serde_json::to_string(&c).expect("encodes"), old);
        c.direction = Some(Direction::Exit);
        c.customs_office_at_border_reference = Some("TJ000123".into());
        let json = serde_json::to_string(&c).expect("encodes");
        assert!(
            json.ends_with(
                r#""direction":"exit","customs_office_at_border_reference":"TJ000123"}"#
            ),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Crossing>(&json).expect("decodes"), c);
        let wco = wco::crossing(&c);
        assert_eq!(wco["customs_office_at_border_reference"], "TJ000123");
        assert_eq!(wco["mode_of_transport_at_the_border"], 3);
        assert_eq!(
            wco["transport_means"],
            serde_json::json!([{"type_of_identification": 30, "identification_number": "1234AB01", "nationality": "TJ"}])
        );
        assert_eq!(wco["other"]["direction"], "exit");
        c.plate = Some(PlateRead {
            text: "AKE12345LH".into(),
            confidence: 0.9,
            format: Some("ULD".into()),
            frames: 2,
        });
        let wco = wco::crossing(&c);
        assert!(wco.get("transport_means").is_none(), "{wco}");
        assert_eq!(
            wco["transport_equipment"][0]["container_identification_number"],
            "AKE12345LH"
        );
        assert_eq!(wco::nationality_of_plate_format("EU"), None);
        assert_eq!(wco::nationality_of_plate_format("RU-TRAILER"), Some("RU"));
        c.plate = Some(PlateRead {
            text: "A123BC77".into(),
            confidence: 0.9,
            format: Some("RU".into()),
            frames: 2,
        });
        c.trailer_plate = Some(PlateRead {
            text: "AB123477".into(),
            confidence: 0.8,
            format: Some("RU-TRAILER".into()),
            frames: 2,
        });
        assert_eq!(
            wco::crossing(&c)["transport_means"],
            serde_json::json!([
                {"type_of_identification": 30, "identification_number": "A123BC77", "nationality": "RU"},
                {"type_of_identification": 31, "identification_number": "AB123477", "nationality": "RU"}
            ])
        );
    }

    #[test]
    fn scan_event_reads_the_feed_line_format() {
        let line = r#"{"scanner_id":"XR-1","scan_id":"S-000042","scanned_at":"2026-11-21T10:00:00Z","decision":"NO_ALARM","images":["S-000042.png"]}"#;
        let scan: ScanEvent = serde_json::from_str(line).expect("valid line");
        assert_eq!(scan.scan_id, "S-000042");
        assert_eq!(scan.decision, ScanDecision::NoAlarm);
        assert_eq!(scan.lane, None);
    }
}
