//! # Seals: a per-post hash chain with Ed25519 signatures over each record
//!
//! Tamper evidence for stored weighings (WELMEC 7.2 extension L: L2/L3 protected against change,
//! L4 traceable to the measurement, L6 a tool detects change). Pure: no I/O, no clock.
//!
//! ## What is sealed
//! A sealed [`RecordEnvelope`] carries a [`Seal`]: `prev` (the previous record's `hash`, or 64
//! zeros for seq 1), `key` (the post's Ed25519 public key), `hash` and `sig` (all hex).
//!
//! - **Canonical encoding**: the envelope as JSON, parsed into a JSON tree, with `seal.hash` and
//!   `seal.sig` removed, written with object keys sorted (byte order), no whitespace, numbers in
//!   serde_json's shortest round-trip form ([`canonical_bytes`]). Because the tree is taken from
//!   the JSON text and not from the Rust struct, fields that a newer post adds are covered too,
//!   and an older central verifies them without knowing them.
//! - `hash = SHA-256("bcp-record/v2\n" || canonical)`; it covers `prev`, so each record commits
//!   to the whole chain before it.
//! - `sig = Ed25519(post key, hash)`, verified strictly (no malleable signatures).
//!
//! [`seal`] is what the post's outbox does before it commits a record; [`open`] is what central
//! does with a payload: check hash and signature against the key the payload names. Whether that
//! key is the post's registered key, and whether `prev` matches the stored neighbour, is the
//! receiver's decision (it knows the store).

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::RecordEnvelope;

/// The `prev` of a post's first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// Domain separation for the record hash.
const DOMAIN: &[u8] = b"bcp-record/v2\n";

/// The tamper evidence attached to a record. All fields are lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// `hash` of the post's previous record (seq - 1); 64 zeros for seq 1.
    pub prev: String,
    /// The post's Ed25519 public key (32 bytes).
    pub key: String,
    /// SHA-256 of the canonical encoding (32 bytes).
    pub hash: String,
    /// Ed25519 signature over `hash` (64 bytes).
    pub sig: String,
}

/// Why a payload's seal does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("payload is not a record envelope: {0}")]
    NotAnEnvelope(String),
    #[error("record is not sealed (no hash chain, no signature)")]
    Unsealed,
    #[error("seal field {field} is not {bytes} bytes of hex")]
    BadField { field: &'static str, bytes: usize },
    #[error("record hash does not match its content (altered after sealing)")]
    HashMismatch,
    #[error("signature does not verify with key {key}")]
    BadSignature { key: String },
}

/// A payload whose hash and signature hold (against the key it names).
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub envelope: RecordEnvelope,
    pub hash: [u8; 32],
    pub prev: [u8; 32],
    pub key: [u8; 32],
}

/// Seals `env` as the successor of `prev` with `key`; returns the record's hash.
pub fn seal(env: &mut RecordEnvelope, prev: &[u8; 32], key: &SigningKey) -> [u8; 32] {
    let hash = chain(env, prev, key.verifying_key().as_bytes());
    sign(env, &hash, key);
    hash
}

/// The first half of [`seal`]: links `env` to `prev` under the public key `public` and sets
/// `seal.hash`, leaving `seal.sig` empty. The chain must be built in order; the signatures
/// ([`sign`]) may then be made in any order or in parallel.
pub fn chain(env: &mut RecordEnvelope, prev: &[u8; 32], public: &[u8; 32]) -> [u8; 32] {
    env.seal = Some(Seal {
        prev: to_hex(prev),
        key: to_hex(public),
        hash: String::new(),
        sig: String::new(),
    });
    // A struct of strings, numbers and options always encodes; the tree round trip cannot fail.
    let tree = serde_json::to_string(env)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .unwrap_or(Value::Null);
    let hash = record_hash(&canonical_bytes(&tree));
    if let Some(s) = env.seal.as_mut() {
        s.hash = to_hex(&hash);
    }
    hash
}

/// The second half of [`seal`]: signs `hash` (what [`chain`] returned for `env`) into `seal.sig`.
pub fn sign(env: &mut RecordEnvelope, hash: &[u8; 32], key: &SigningKey) {
    let sig = key.sign(hash);
    if let Some(s) = env.seal.as_mut() {
        s.sig = to_hex(&sig.to_bytes());
    }
}

/// Parses a payload and checks its hash and signature against the key it names.
pub fn open(payload: &[u8]) -> Result<Opened, SealError> {
    let tree: Value =
        serde_json::from_slice(payload).map_err(|e| SealError::NotAnEnvelope(e.to_string()))?;
    let envelope: RecordEnvelope = serde_json::from_value(tree.clone())
        .map_err(|e| SealError::NotAnEnvelope(e.to_string()))?;
    let s = envelope.seal.as_ref().ok_or(SealError::Unsealed)?;
    let prev = from_hex::<32>(&s.prev).ok_or(SealError::BadField {
        field: "prev",
        bytes: 32,
    })?;
    let key = from_hex::<32>(&s.key).ok_or(SealError::BadField {
        field: "key",
        bytes: 32,
    })?;
    let claimed = from_hex::<32>(&s.hash).ok_or(SealError::BadField {
        field: "hash",
        bytes: 32,
    })?;
    let sig = from_hex::<64>(&s.sig).ok_or(SealError::BadField {
        field: "sig",
        bytes: 64,
    })?;
    let hash = record_hash(&canonical_bytes(&tree));
    if hash != claimed {
        return Err(SealError::HashMismatch);
    }
    let bad_sig = || SealError::BadSignature { key: s.key.clone() };
    let vk = VerifyingKey::from_bytes(&key).map_err(|_| bad_sig())?;
    vk.verify_strict(&hash, &Signature::from_bytes(&sig))
        .map_err(|_| bad_sig())?;
    Ok(Opened {
        envelope,
        hash,
        prev,
        key,
    })
}

/// The record hash of an envelope tree (its `seal.hash` and `seal.sig`, if any, are ignored).
pub fn tree_hash(tree: &Value) -> [u8; 32] {
    record_hash(&canonical_bytes(tree))
}

/// The canonical encoding of an envelope tree (see the module documentation).
pub fn canonical_bytes(tree: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_canonical(tree, &mut out, 0);
    out
}

fn record_hash(canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(canonical);
    h.finalize().into()
}

/// `depth` 0 is the envelope, 1 its direct children: `seal.hash` and `seal.sig` are skipped there.
fn write_canonical(v: &Value, out: &mut Vec<u8>, depth: usize) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            let mut first = true;
            for k in keys {
                let child = &map[k.as_str()];
                let child = if depth == 0 && k == "seal" {
                    // The seal minus what is computed from the canonical form.
                    let mut s = child.clone();
                    if let Value::Object(m) = &mut s {
                        m.remove("hash");
                        m.remove("sig");
                    }
                    std::borrow::Cow::Owned(s)
                } else {
                    std::borrow::Cow::Borrowed(child)
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                write_leaf(&Value::String(k.clone()), out);
                out.push(b':');
                write_canonical(&child, out, depth + 1);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out, depth + 1);
            }
            out.push(b']');
        }
        leaf => write_leaf(leaf, out),
    }
}

fn write_leaf(v: &Value, out: &mut Vec<u8>) {
    // Writing a string, number, bool or null into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Exactly `N` bytes of hex (either case), or `None`.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;
    use crate::Crossing;
    use chrono::{TimeZone as _, Utc};

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn env(seq: u64) -> RecordEnvelope {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        RecordEnvelope {
            post: "TJDYU-01".into(),
            seq,
            recorded_at: t,
            crossing: Crossing {
                id: uuid::Uuid::nil(),
                post: "TJDYU-01".into(),
                lane: "L1".into(),
                arrived_at: t,
                left_at: t,
                plate: Some(crate::PlateRead {
                    text: "1234AB01".into(),
                    confidence: 0.97,
                    format: None,
                    frames: 3,
                }),
                weight: None,
                dimensions: None,
                scan: None,
                flags: Vec::new(),
                images: Vec::new(),
                transport_mode: None,
                train: None,
                config_change: None,
                direction: None,
                customs_office_at_border_reference: None,
            },
            seal: None,
        }
    }

    #[test]
    fn sealed_records_open_and_chain() {
        let k = key(7);
        let mut a = env(1);
        let ha = seal(&mut a, &GENESIS, &k);
        let mut b = env(2);
        let hb = seal(&mut b, &ha, &k);
        let oa = open(&serde_json::to_vec(&a).unwrap()).unwrap();
        let ob = open(&serde_json::to_vec(&b).unwrap()).unwrap();
        assert_eq!((oa.hash, oa.prev), (ha, GENESIS));
        assert_eq!((ob.hash, ob.prev), (hb, ha));
        assert_eq!(ob.key, *k.verifying_key().as_bytes());
        assert_eq!(ob.envelope, b);
    }

    #[test]
    fn any_change_breaks_the_hash_and_a_resign_with_another_key_is_visible() {
        let k = key(7);
        let mut a = env(1);
        seal(&mut a, &GENESIS, &k);
        let json = serde_json::to_string(&a).unwrap();
        let altered = json.replace("1234AB01", "1234AB02");
        assert_eq!(open(altered.as_bytes()), Err(SealError::HashMismatch));
        // Re-sealed by someone else: it opens, but under their key, which central compares.
        let mut forged = a.clone();
        seal(&mut forged, &GENESIS, &key(8));
        assert_ne!(
            open(&serde_json::to_vec(&forged).unwrap()).unwrap().key,
            *k.verifying_key().as_bytes()
        );
        // A signature from another key under this key's name fails.
        let mut swapped = a.clone();
        let other = forged.seal.unwrap();
        swapped.seal.as_mut().unwrap().sig = other.sig;
        assert!(matches!(
            open(&serde_json::to_vec(&swapped).unwrap()),
            Err(SealError::BadSignature { .. })
        ));
        let mut unsealed = a;
        unsealed.seal = None;
        assert_eq!(
            open(&serde_json::to_vec(&unsealed).unwrap()),
            Err(SealError::Unsealed)
        );
    }

    #[test]
    fn canonical_form_sorts_keys_and_covers_unknown_fields() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2.5],"x":"s"}}"#).unwrap();
        assert_eq!(canonical_bytes(&v), br#"{"a":{"x":"s","y":[1,2.5]},"b":1}"#);
        // A newer post's extra field is part of what is signed.
        let k = key(1);
        let mut a = env(1);
        seal(&mut a, &GENESIS, &k);
        let mut tree: Value = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert!(open(&serde_json::to_vec(&tree).unwrap()).is_ok());
        tree["extra"] = Value::from("x");
        assert_eq!(
            open(&serde_json::to_vec(&tree).unwrap()),
            Err(SealError::HashMismatch)
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&b), "0001abff");
        assert_eq!(from_hex::<4>("0001ABFF"), Some(b));
        assert_eq!(from_hex::<4>("0001abf"), None);
        assert_eq!(from_hex::<4>("0001abfg"), None);
    }
}
