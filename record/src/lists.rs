//! # Downlink lists: what central sends to posts (hotlists, pre-arrival declarations, config)
//!
//! A [`DownlinkList`] is versioned per `(post, kind)` and signed by central's Ed25519 key over
//! the same canonical form as records ([`crate::seal::canonical_bytes`], with `sig` left out).
//! Central publishes it retained on `topics::list(post, kind)`, so a post that reconnects gets
//! the latest at once; the post applies a list only if the signature holds against central's
//! key it was given and the version is newer than the one it holds.

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::seal::{canonical_bytes, from_hex, to_hex};

/// Domain separation for list signatures.
const DOMAIN: &[u8] = b"bcp-list/v1\n";

/// One list as central issues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownlinkList {
    pub post: String,
    /// `hotlist`, `declarations`, `config`, ...: letters, digits, `-`, `_`.
    pub kind: String,
    /// Grows with every issue of this `(post, kind)`.
    pub version: u64,
    pub issued_at: DateTime<Utc>,
    /// The list itself, as the kind defines it.
    pub entries: Value,
    /// Central's public key (hex).
    #[serde(default)]
    pub key: String,
    /// Ed25519 over SHA-256 of the domain tag and the canonical form without `sig` (hex).
    #[serde(default)]
    pub sig: String,
}

/// Why a list is not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("payload is not a downlink list: {0}")]
    NotAList(String),
    #[error("list signed with key {found}, not central's {expected}")]
    WrongKey { found: String, expected: String },
    #[error("list signature does not verify")]
    BadSignature,
}

fn digest(tree: &Value) -> [u8; 32] {
    let mut t = tree.clone();
    if let Value::Object(m) = &mut t {
        m.remove("sig");
    }
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(canonical_bytes(&t));
    h.finalize().into()
}

fn tree_of(list: &DownlinkList) -> Value {
    // Plain data always encodes; the tree comes from the text, as for records.
    serde_json::to_string(list)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

impl DownlinkList {
    /// Signs the list with central's key (sets `key` and `sig`).
    pub fn sign(&mut self, key: &SigningKey) {
        self.key = to_hex(key.verifying_key().as_bytes());
        self.sig = String::new();
        let d = digest(&tree_of(self));
        self.sig = to_hex(&key.sign(&d).to_bytes());
    }

    /// Parses a payload and checks it was signed by `central` (a public key).
    pub fn open(payload: &[u8], central: &[u8; 32]) -> Result<Self, ListError> {
        let tree: Value =
            serde_json::from_slice(payload).map_err(|e| ListError::NotAList(e.to_string()))?;
        let list: DownlinkList =
            serde_json::from_value(tree.clone()).map_err(|e| ListError::NotAList(e.to_string()))?;
        if from_hex::<32>(&list.key) != Some(*central) {
            return Err(ListError::WrongKey {
                found: list.key.clone(),
                expected: to_hex(central),
            });
        }
        let sig = from_hex::<64>(&list.sig).ok_or(ListError::BadSignature)?;
        let vk = VerifyingKey::from_bytes(central).map_err(|_| ListError::BadSignature)?;
        vk.verify_strict(&digest(&tree), &Signature::from_bytes(&sig))
            .map_err(|_| ListError::BadSignature)?;
        Ok(list)
    }
}

/// The `hotlist` kind: plates the post must flag (stolen, wanted, under an alert).
pub const KIND_HOTLIST: &str = "hotlist";
/// The `declarations` kind: pre-arrival declarations, each a plate and its declared weight.
pub const KIND_DECLARATIONS: &str = "declarations";

/// The `config` kind: settings of the post's configuration file that central changes remotely,
/// `[{"key": "limits.max_gross_kg", "value": "40000"}]`. The post writes them as
/// `bcpctl config set` would (validated, atomic, audited as changed by central) and reloads;
/// only [`CENTRAL_CONFIG_SECTIONS`] may be set this way.
pub const KIND_CONFIG: &str = "config";

/// The sections of the post's configuration central may set: what a reload applies without a
/// restart. The link to central (`sync`), the post's identity (`post`), its storage, its control
/// socket and its ANPR engine stay with the technician on site: a wrong value there could cut
/// the post off from the very channel that would correct it.
pub const CENTRAL_CONFIG_SECTIONS: &[&str] = &[
    "lane",
    "limits",
    "log",
    "weighbridge",
    "dimensions",
    "camera",
    "scanner",
];

/// One setting of a `config` list: a dotted key and its value as TOML text (`"4000"`,
/// `"\"xk3190\""`, `"true"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigEntry {
    pub key: String,
    pub value: String,
}

/// One plate of a `hotlist` list: `{"plate": "1234AB01", "reason": "stolen"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotlistEntry {
    /// Normalised as plate reads are (uppercase, no spaces or dashes).
    pub plate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One pre-arrival declaration of a `declarations` list:
/// `{"plate": "1234AB01", "declaration_id": "MRN...", "declared_gross_kg": 38500}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclarationEntry {
    pub plate: String,
    /// The declaration's reference (an NCTS MRN, a TIR carnet number...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration_id: Option<String>,
    /// The gross mass declared for the vehicle and its load.
    pub declared_gross_kg: f64,
}

/// The entries of a list of a kind this product understands, checked; an unknown kind is
/// passed through as it is (`Ok(None)`), for a newer post to interpret.
#[derive(Debug, Clone, PartialEq)]
pub enum KnownEntries {
    Hotlist(Vec<HotlistEntry>),
    Declarations(Vec<DeclarationEntry>),
    Config(Vec<ConfigEntry>),
}

/// Parses `entries` as `kind` defines them; the error names the entry and what is wrong.
pub fn parse_entries(kind: &str, entries: &Value) -> Result<Option<KnownEntries>, String> {
    fn each<T: serde::de::DeserializeOwned>(entries: &Value) -> Result<Vec<T>, String> {
        let Value::Array(items) = entries else {
            return Err("entries must be a JSON array".to_owned());
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                serde_json::from_value(item.clone()).map_err(|e| format!("entry {}: {e}", i + 1))
            })
            .collect()
    }
    let check_plate = |i: usize, plate: &str| -> Result<(), String> {
        if plate.is_empty()
            || !plate
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(format!(
                "entry {}: plate {plate:?} is not normalised (uppercase letters and digits only, \
                 as plates are read)",
                i + 1
            ));
        }
        Ok(())
    };
    match kind {
        KIND_HOTLIST => {
            let list: Vec<HotlistEntry> = each(entries)?;
            for (i, e) in list.iter().enumerate() {
                check_plate(i, &e.plate)?;
            }
            Ok(Some(KnownEntries::Hotlist(list)))
        }
        KIND_DECLARATIONS => {
            let list: Vec<DeclarationEntry> = each(entries)?;
            for (i, e) in list.iter().enumerate() {
                check_plate(i, &e.plate)?;
                if !(e.declared_gross_kg.is_finite() && e.declared_gross_kg > 0.0) {
                    return Err(format!(
                        "entry {}: declared_gross_kg must be a positive number of kilograms",
                        i + 1
                    ));
                }
            }
            Ok(Some(KnownEntries::Declarations(list)))
        }
        KIND_CONFIG => {
            let list: Vec<ConfigEntry> = each(entries)?;
            for (i, e) in list.iter().enumerate() {
                check_config_entry(e).map_err(|why| format!("entry {}: {why}", i + 1))?;
            }
            Ok(Some(KnownEntries::Config(list)))
        }
        _ => Ok(None),
    }
}

/// A `config` entry's key is dotted, in a section central may set; its value is one TOML value.
fn check_config_entry(e: &ConfigEntry) -> Result<(), String> {
    let section = e.key.split('.').next().unwrap_or_default();
    if e.key.split('.').count() < 2
        || e.key.split('.').any(|part| {
            part.is_empty()
                || !part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
    {
        return Err(format!(
            "key {:?} is not a dotted key such as limits.max_gross_kg",
            e.key
        ));
    }
    if !CENTRAL_CONFIG_SECTIONS.contains(&section) {
        return Err(format!(
            "key {:?}: central may set only [{}]; [{section}] stays with the technician on site",
            e.key,
            CENTRAL_CONFIG_SECTIONS.join("], [")
        ));
    }
    if e.value.trim().is_empty() || e.value.contains('\n') {
        return Err(format!(
            "key {:?}: the value must be one TOML value on one line (4000, \"text\", true)",
            e.key
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;

    #[test]
    fn signed_lists_open_and_any_change_or_other_key_fails() {
        let central = SigningKey::from_bytes(&[5; 32]);
        let public = *central.verifying_key().as_bytes();
        let mut list = DownlinkList {
            post: "TJDYU-01".into(),
            kind: "hotlist".into(),
            version: 3,
            issued_at: Utc::now(),
            entries: serde_json::json!([{"plate": "1234AB01", "reason": "stolen"}]),
            key: String::new(),
            sig: String::new(),
        };
        list.sign(&central);
        let payload = serde_json::to_vec(&list).unwrap();
        assert_eq!(DownlinkList::open(&payload, &public).unwrap(), list);
        let altered = String::from_utf8(payload.clone())
            .unwrap()
            .replace("1234AB01", "9999AB01");
        assert_eq!(
            DownlinkList::open(altered.as_bytes(), &public),
            Err(ListError::BadSignature)
        );
        assert!(matches!(
            DownlinkList::open(&payload, &[1; 32]),
            Err(ListError::WrongKey { .. })
        ));
    }

    #[test]
    fn known_kinds_are_checked_entry_by_entry() {
        let hot =
            serde_json::json!([{"plate": "1234AB01", "reason": "stolen"}, {"plate": "77KZ123"}]);
        match parse_entries(KIND_HOTLIST, &hot).unwrap() {
            Some(KnownEntries::Hotlist(list)) => {
                assert_eq!(list.len(), 2);
                assert_eq!(list[1].reason, None);
            }
            other => panic!("{other:?}"),
        }
        let err =
            parse_entries(KIND_HOTLIST, &serde_json::json!([{"plate": "12-34 ab"}])).unwrap_err();
        assert!(
            err.contains("entry 1") && err.contains("not normalised"),
            "{err}"
        );
        let err = parse_entries(KIND_HOTLIST, &serde_json::json!({"plate": "X"})).unwrap_err();
        assert!(err.contains("array"), "{err}");
        let err = parse_entries(
            KIND_HOTLIST,
            &serde_json::json!([{"plate": "A1", "colour": "red"}]),
        )
        .unwrap_err();
        assert!(err.contains("entry 1") && err.contains("colour"), "{err}");

        let decl = serde_json::json!([{"plate": "1234AB01", "declaration_id": "26TJ0001", "declared_gross_kg": 38500}]);
        match parse_entries(KIND_DECLARATIONS, &decl).unwrap() {
            Some(KnownEntries::Declarations(list)) => {
                assert_eq!(list[0].declared_gross_kg, 38_500.0)
            }
            other => panic!("{other:?}"),
        }
        let err = parse_entries(
            KIND_DECLARATIONS,
            &serde_json::json!([{"plate": "1234AB01"}, {"plate": "1", "declared_gross_kg": -1}]),
        )
        .unwrap_err();
        assert!(
            err.contains("entry 1") && err.contains("declared_gross_kg"),
            "{err}"
        );
        assert_eq!(
            parse_entries("tariffs", &serde_json::json!({"x": 1})),
            Ok(None),
            "an unknown kind passes through for a newer post"
        );
    }

    #[test]
    fn config_entries_may_set_only_the_sections_a_reload_applies() {
        let ok = serde_json::json!([
            {"key": "limits.max_gross_kg", "value": "40000"},
            {"key": "weighbridge.protocol", "value": "\"xk3190\""}
        ]);
        match parse_entries(KIND_CONFIG, &ok).unwrap() {
            Some(KnownEntries::Config(list)) => {
                assert_eq!(list.len(), 2);
                assert_eq!(list[0].key, "limits.max_gross_kg");
            }
            other => panic!("{other:?}"),
        }
        for (entries, want) in [
            (
                serde_json::json!([{"key": "sync.broker_host", "value": "\"evil\""}]),
                "stays with the technician",
            ),
            (
                serde_json::json!([{"key": "post.id", "value": "\"X\""}]),
                "[post] stays",
            ),
            (
                serde_json::json!([{"key": "limits", "value": "1"}]),
                "not a dotted key",
            ),
            (
                serde_json::json!([{"key": "limits..x", "value": "1"}]),
                "not a dotted key",
            ),
            (
                serde_json::json!([{"key": "limits.max_gross_kg", "value": "1\n[sync]"}]),
                "one line",
            ),
            (serde_json::json!([{"key": "limits.max_gross_kg"}]), "value"),
        ] {
            let err = parse_entries(KIND_CONFIG, &entries).unwrap_err();
            assert!(
                err.contains("entry 1") && err.contains(want),
                "{entries}: {err}"
            );
        }
    }
}
