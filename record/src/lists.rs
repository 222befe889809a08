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
}
