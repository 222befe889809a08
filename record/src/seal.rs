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
//!
//! ## Many records at once: [`open_many`]
//! Central receives a post's records a hundred at a time, all signed with one key. [`open_many`]
//! checks each hash as [`open`] does and verifies the signatures together with Ed25519 batch
//! verification (ed25519-dalek's `verify_batch` equation, one multiscalar multiplication for
//! the batch, with the terms of each key summed into one: `batch`; see BENCHMARKS.md). Before a signature joins the batch, what the strict check
//! refuses and the batch equation alone would not is refused the strict way: a key that is not
//! a valid point or is of small order (checked once per key), an `R` that does not decompress,
//! is of small order, or is not in canonical encoding; a non-canonical `s` is refused by the
//! batch itself. Such a signature, and every signature of a batch whose equation fails, is
//! verified alone with `verify_strict`, so a bad record is named with its own error and never
//! takes the others down. What remains different from one strict check per record: a
//! signature whose `R` has a small-order component (neither of small order nor torsion-free)
//! may pass the batch equation where the strict check refuses it; only the holder of the
//! post's private key can make such a signature, so it admits no forgery, and it changes
//! nothing of what the signature covers (the record hash).

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::RecordEnvelope;

mod batch;
mod signer;
mod text;
pub use signer::{PostSigner, SealingKey};
pub use text::canonical_from_text;

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
pub fn seal(env: &mut RecordEnvelope, prev: &[u8; 32], key: &impl SealingKey) -> [u8; 32] {
    let hash = chain(env, prev, &key.public());
    sign(env, &hash, key);
    hash
}

/// The first half of [`seal`]: links `env` to `prev` under the public key `public` and sets
/// `seal.hash`, leaving `seal.sig` empty. The chain must be built in order; the signatures
/// ([`sign`]) may then be made in any order or in parallel.
pub fn chain(env: &mut RecordEnvelope, prev: &[u8; 32], public: &[u8; 32]) -> [u8; 32] {
    let mut prepared = prepare(env, public);
    link(env, &mut prepared, prev)
}

/// What [`prepare`] made of an envelope: its canonical form with a placeholder where the
/// previous record's hash goes, for [`link`]; and its JSON text, for [`sealed_json`].
#[derive(Debug, Clone)]
pub struct Prepared {
    canonical: Vec<u8>,
    /// Where the 64 hex digits of `seal.prev` are in `canonical`, if found.
    prev_at: Option<usize>,
    /// The envelope as `serde_json::to_string` wrote it, its seal still unfinished.
    text: Vec<u8>,
    /// Where that seal's object is in `text`: the last member, as `RecordEnvelope` declares it.
    seal_at: Option<usize>,
}

/// The placeholder for `seal.prev` while the canonical form is built without it.
const PREV_PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// [`chain`] in two steps, so that a batch's costly part runs in parallel: `prepare` (the
/// canonical form, independent of the chain; any order, any thread), then [`link`] (the
/// previous hash written in, SHA-256; in order). Sets `env.seal` with `key` = `public`.
pub fn prepare(env: &mut RecordEnvelope, public: &[u8; 32]) -> Prepared {
    let unfinished = Seal {
        prev: PREV_PLACEHOLDER.to_owned(),
        key: to_hex(public),
        hash: String::new(),
        sig: String::new(),
    };
    let seal_text = serde_json::to_vec(&unfinished).unwrap_or_default();
    env.seal = Some(unfinished);
    let text = serde_json::to_vec(env).unwrap_or_default();
    let canonical = text_canonical(&text);
    // The seal's `prev` is the last `"prev":"..."` of the canonical form: the envelope's keys
    // sort `crossing`, `post`, `recorded_at`, `seal`, `seq`, and only hex and numbers follow
    // it. [`link`] checks what it finds and builds the form anew if it is not the placeholder.
    let pattern = format!("\"prev\":\"{PREV_PLACEHOLDER}\"");
    let prev_at = canonical
        .windows(pattern.len())
        .rposition(|w| w == pattern.as_bytes())
        .map(|at| at + "\"prev\":\"".len());
    // The text ends with the seal's object and the envelope's closing brace.
    let seal_at = text
        .strip_suffix(b"}")
        .filter(|rest| rest.ends_with(&seal_text))
        .map(|rest| rest.len() - seal_text.len());
    Prepared {
        canonical,
        prev_at,
        text,
        seal_at,
    }
}

/// The JSON text of `env` once [`link`] and [`sign`] are done: what `serde_json::to_string`
/// gives, made from the text [`prepare`] wrote with the finished seal put in (the rest of the
/// envelope is not written again). `None` if `env` has no seal or the seal was not found.
pub fn sealed_json(prepared: &Prepared, env: &RecordEnvelope) -> Option<String> {
    let at = prepared.seal_at?;
    let seal = serde_json::to_vec(env.seal.as_ref()?).ok()?;
    let mut text = Vec::with_capacity(prepared.text.len() + 192);
    text.extend_from_slice(prepared.text.get(..at)?);
    text.extend_from_slice(&seal);
    text.push(b'}');
    String::from_utf8(text).ok()
}

/// The canonical form of `env` (see [`text_canonical`]).
fn envelope_canonical(env: &RecordEnvelope) -> Vec<u8> {
    text_canonical(&serde_json::to_vec(env).unwrap_or_default())
}

/// [`json_canonical`] of a text the post wrote from its own struct. A struct of strings,
/// numbers and options always encodes and parses back, so the fallback (the form of `null`) is
/// never taken.
fn text_canonical(text: &[u8]) -> Vec<u8> {
    json_canonical(text).unwrap_or_else(|| canonical_bytes(&Value::Null))
}

/// The canonical form of an envelope's JSON text: straight from the text where
/// [`canonical_from_text`] can, else through the tree it parses into (the same bytes either
/// way); `None`: the text is not JSON. Always from the text, never `serde_json::to_value`: an
/// `f32` (a read's confidence) must become the number its text says (0.97), as it does when
/// central parses the payload, not the f64 nearest to the f32 (0.9700000286102295).
fn json_canonical(text: &[u8]) -> Option<Vec<u8>> {
    canonical_from_text(text).or_else(|| {
        serde_json::from_slice::<Value>(text)
            .ok()
            .map(|tree| canonical_bytes(&tree))
    })
}

/// The second step of [`chain`]: links the prepared `env` to `prev`; returns its hash (also
/// set as `seal.hash`).
pub fn link(env: &mut RecordEnvelope, prepared: &mut Prepared, prev: &[u8; 32]) -> [u8; 32] {
    let prev_hex = to_hex(prev);
    let at = prepared
        .prev_at
        .filter(|&at| prepared.canonical.get(at..at + 64) == Some(PREV_PLACEHOLDER.as_bytes()));
    if let Some(s) = env.seal.as_mut() {
        s.prev.clone_from(&prev_hex);
    }
    match at {
        Some(at) => prepared.canonical[at..at + 64].copy_from_slice(prev_hex.as_bytes()),
        None => {
            // Not where it was expected (an envelope not made by `prepare`): the slow way.
            prepared.canonical = envelope_canonical(env);
            prepared.prev_at = None;
        }
    }
    let hash = record_hash(&prepared.canonical);
    if let Some(s) = env.seal.as_mut() {
        s.hash = to_hex(&hash);
    }
    hash
}

/// The second half of [`seal`]: signs `hash` (what [`chain`] returned for `env`) into `seal.sig`.
pub fn sign(env: &mut RecordEnvelope, hash: &[u8; 32], key: &impl SealingKey) {
    let sig = key.sign_hash(hash);
    if let Some(s) = env.seal.as_mut() {
        s.sig = to_hex(&sig);
    }
}

/// Parses a payload and checks its hash and signature against the key it names.
pub fn open(payload: &[u8]) -> Result<Opened, SealError> {
    let (opened, sig) = open_unverified(payload)?;
    verify_one(&opened, &sig)?;
    Ok(opened)
}

/// [`open`] on every payload, in order, with the signatures verified together (see "Many
/// records at once" in the module documentation). The result for each payload is the one
/// [`open`] gives it.
pub fn open_many<P: AsRef<[u8]>>(payloads: &[P]) -> Vec<Result<Opened, SealError>> {
    open_many_checked(
        payloads
            .iter()
            .map(|p| open_unverified(p.as_ref()))
            .collect(),
    )
}

/// [`open_many`] for payloads whose record hash the caller has just computed with
/// [`text_hash`] (a batch decoder, which needs it to rebuild each record's `hash` and the next
/// one's `prev`): the hash is not computed a second time. Each hash must be `text_hash` of its
/// payload; it is still compared with the `hash` the payload claims.
pub fn open_many_hashed<P: AsRef<[u8]>>(
    payloads: &[(P, [u8; 32])],
) -> Vec<Result<Opened, SealError>> {
    open_many_checked(
        payloads
            .iter()
            .map(|(payload, hash)| {
                let envelope = parse_envelope(payload.as_ref())?;
                open_envelope_unverified(envelope, *hash)
            })
            .collect(),
    )
}

/// The signatures of records whose other checks are done, verified together.
fn open_many_checked(
    mut results: Vec<Result<(Opened, Signature), SealError>>,
) -> Vec<Result<Opened, SealError>> {
    // Which records may be verified in the batch: their key and R pass the strict pre-checks.
    let mut keys: HashMap<[u8; 32], Option<VerifyingKey>> = HashMap::new();
    let mut in_batch = vec![false; results.len()];
    let (mut hashes, mut sigs, mut vks) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in results.iter().enumerate() {
        let Ok((opened, sig)) = r else { continue };
        let vk = *keys.entry(opened.key).or_insert_with(|| {
            VerifyingKey::from_bytes(&opened.key)
                .ok()
                .filter(|vk| !vk.is_weak())
        });
        if let Some(vk) = vk.filter(|_| strict_r(sig)) {
            in_batch[i] = true;
            hashes.push(&opened.hash[..]);
            sigs.push(*sig);
            vks.push(vk);
        }
    }
    if hashes.len() < 2 || !batch::verify(&hashes, &sigs, &vks) {
        in_batch.fill(false);
    }
    for (r, batched) in results.iter_mut().zip(in_batch) {
        // Not batched, or the batch failed: the strict check alone names what is wrong.
        if let (Ok((opened, sig)), false) = (&*r, batched) {
            if let Err(e) = verify_one(opened, sig) {
                *r = Err(e);
            }
        }
    }
    results.into_iter().map(|r| r.map(|(o, _)| o)).collect()
}

/// `R` as the strict check wants it: in canonical encoding, not of small order. (Not a point
/// at all: the batch equation fails on it, and each record of the batch is then verified alone,
/// which names it. Not decompressing `R` here saves a field exponentiation per record; the
/// batch decompresses it anyway.)
fn strict_r(sig: &Signature) -> bool {
    let mut y = *sig.r_bytes();
    let canonical = y_is_canonical(&y);
    y[31] &= 0x7f; // the sign of x: a point and its negation have the same order
    canonical && !SMALL_ORDER_Y.contains(&y)
}

/// The `y` coordinates (encoded, the sign bit clear) of the eight points of small order: an
/// `R` with one of them is of small order whatever its sign bit (a test checks the list
/// against curve25519-dalek's eight-torsion points).
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    // the identity (y = 1)
    [
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,
    ],
    // order 2 (y = p - 1)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // order 4 (y = 0)
    [0; 32],
    // order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    // order 8
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// The encoded `y` (the low 255 bits, little-endian) is below the field's prime 2^255 - 19.
/// (The one other non-canonical encoding, a set sign bit on a point with x = 0, is of a point
/// of small order, refused by the caller anyway.)
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    // y >= 2^255 - 19 only when every bit above the lowest byte is set and that byte is >= 0xed.
    let high_all_set = bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff);
    !(high_all_set && bytes[0] >= 0xed)
}

/// Everything [`open`] checks but the signature; returns the signature to verify.
fn open_unverified(payload: &[u8]) -> Result<(Opened, Signature), SealError> {
    let envelope = parse_envelope(payload)?;
    // The payload parsed, so it is JSON and has a hash.
    let hash = text_hash(payload)
        .ok_or_else(|| SealError::NotAnEnvelope("payload is not JSON".to_owned()))?;
    open_envelope_unverified(envelope, hash)
}

/// The payload as an envelope: straight from the text, no JSON tree (a key written twice is
/// refused here, where a tree would keep the last).
fn parse_envelope(payload: &[u8]) -> Result<RecordEnvelope, SealError> {
    serde_json::from_slice(payload).map_err(|e| SealError::NotAnEnvelope(e.to_string()))
}

/// [`open_unverified`] of a parsed payload whose record hash is `hash`.
fn open_envelope_unverified(
    envelope: RecordEnvelope,
    hash: [u8; 32],
) -> Result<(Opened, Signature), SealError> {
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
    if hash != claimed {
        return Err(SealError::HashMismatch);
    }
    Ok((
        Opened {
            envelope,
            hash,
            prev,
            key,
        },
        Signature::from_bytes(&sig),
    ))
}

/// The strict Ed25519 check of one record's signature over its hash.
fn verify_one(opened: &Opened, sig: &Signature) -> Result<(), SealError> {
    let bad_sig = || SealError::BadSignature {
        key: to_hex(&opened.key),
    };
    let vk = VerifyingKey::from_bytes(&opened.key).map_err(|_| bad_sig())?;
    vk.verify_strict(&opened.hash, sig).map_err(|_| bad_sig())
}

/// The record hash of an envelope's JSON text: [`tree_hash`] of the tree the text parses into,
/// without building that tree where [`canonical_from_text`] can. `None`: the text is not JSON.
pub fn text_hash(text: &[u8]) -> Option<[u8; 32]> {
    json_canonical(text).map(|canonical| record_hash(&canonical))
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
        Value::Object(map) => write_object(map, out, depth, false),
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

/// An object with its keys sorted (byte order); `is_seal`: the envelope's seal, written minus
/// what is computed from the canonical form (`hash`, `sig`). Keys are written straight from
/// the map and nothing is cloned: this runs for every record sealed and every record central
/// opens.
fn write_object(
    map: &serde_json::Map<String, Value>,
    out: &mut Vec<u8>,
    depth: usize,
    is_seal: bool,
) {
    let mut entries: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| !(is_seal && (k.as_str() == "hash" || k.as_str() == "sig")))
        .collect();
    // Already in order when the map is a BTreeMap (serde_json without `preserve_order`).
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, child)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        match child {
            Value::Object(seal) if depth == 0 && k.as_str() == "seal" => {
                write_object(seal, out, depth + 1, true)
            }
            _ => write_canonical(child, out, depth + 1),
        }
    }
    out.push(b'}');
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
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
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use ed25519_dalek::{SigningKey, Verifier as _};

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    /// The small-order `y` list is exactly the `y`s of the eight-torsion points.
    #[test]
    fn the_small_order_list_is_the_eight_torsion() {
        let mut want: Vec<[u8; 32]> = curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .map(|p| {
                let mut y = p.compress().to_bytes();
                y[31] &= 0x7f;
                y
            })
            .collect();
        want.sort_unstable();
        want.dedup();
        let mut got = SMALL_ORDER_Y.to_vec();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    /// A chain sealed with the post's AWS-LC signer is the chain ed25519-dalek seals, byte for
    /// byte, and it opens; a record signed with another key does not.
    #[test]
    fn the_post_signer_seals_what_dalek_seals() {
        let dalek = key(9);
        let signer = PostSigner::new(&dalek);
        let (mut prev_a, mut prev_b) = (GENESIS, GENESIS);
        for seq in 1..=3u64 {
            let (mut a, mut b) = (env(seq), env(seq));
            prev_a = seal(&mut a, &prev_a, &dalek);
            prev_b = seal(&mut b, &prev_b, &signer);
            assert_eq!(prev_a, prev_b);
            let text = serde_json::to_vec(&b).unwrap();
            assert_eq!(serde_json::to_vec(&a).unwrap(), text);
            assert_eq!(open(&text).unwrap().hash, prev_b);
        }
        let mut forged = env(4);
        let hash = chain(&mut forged, &prev_b, &signer.public());
        sign(&mut forged, &hash, &PostSigner::new(&key(10)));
        assert!(matches!(
            open(&serde_json::to_vec(&forged).unwrap()),
            Err(SealError::BadSignature { .. })
        ));
    }

    /// The hash the canonical form of `env` (as sealed so far) gives, computed the plain way.
    fn plain_hash(env: &RecordEnvelope) -> [u8; 32] {
        let tree: Value = serde_json::from_slice(&serde_json::to_vec(env).unwrap()).unwrap();
        tree_hash(&tree)
    }

    /// `prepare` then `link` (what a batch does, the first part in parallel) hashes exactly what
    /// the envelope's canonical form says, with the real previous hash in it: also when a
    /// crossing's text holds the placeholder `prev` pattern itself, and when the placeholder is
    /// not where `prepare` found it (then the form is built anew).
    #[test]
    fn prepare_then_link_hashes_the_canonical_form_with_the_previous_hash() {
        let public = [7u8; 32];
        let mut prev = GENESIS;
        for seq in 1..=4u64 {
            let mut e = env(seq);
            if seq == 3 {
                e.crossing.lane = format!("\"prev\":\"{PREV_PLACEHOLDER}\"");
            }
            let mut prepared = prepare(&mut e, &public);
            if seq == 4 {
                prepared.prev_at = Some(0);
            }
            let hash = link(&mut e, &mut prepared, &prev);
            let seal = e.seal.clone().unwrap();
            assert_eq!(seal.prev, to_hex(&prev), "seq {seq}");
            assert_eq!(seal.hash, to_hex(&hash), "seq {seq}");
            assert_eq!(hash, plain_hash(&e), "seq {seq}");
            prev = hash;
        }
    }

    /// The row text made from `prepare`'s text is what serialising the sealed envelope gives,
    /// also when a field holds text that looks like the seal.
    #[test]
    fn sealed_json_is_the_sealed_envelopes_json() {
        let key = key(9);
        let public = key.verifying_key().to_bytes();
        let mut prev = GENESIS;
        for seq in 1..=3u64 {
            let mut e = env(seq);
            if seq == 2 {
                e.crossing.lane = format!(
                    "\"seal\":{{\"prev\":\"{PREV_PLACEHOLDER}\",\"key\":\"{}\",\"hash\":\"\",\"sig\":\"\"}}}}",
                    to_hex(&public)
                );
            }
            let mut prepared = prepare(&mut e, &public);
            prev = link(&mut e, &mut prepared, &prev);
            sign(&mut e, &prev, &key);
            let text = sealed_json(&prepared, &e).expect("the seal is found");
            assert_eq!(text, serde_json::to_string(&e).unwrap(), "seq {seq}");
            assert!(open(text.as_bytes()).is_ok(), "seq {seq}");
        }
        let mut unsealed = env(4);
        let prepared = prepare(&mut unsealed, &public);
        unsealed.seal = None;
        assert_eq!(sealed_json(&prepared, &unsealed), None);
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
                trailer_plate: None,
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
        // A key written twice is refused, not read as its last copy (as a JSON tree would).
        let twice = json.replacen(
            r#""post":"TJDYU-01","#,
            r#""post":"TJDYU-01","post":"X","#,
            1,
        );
        assert!(matches!(
            open(twice.as_bytes()),
            Err(SealError::NotAnEnvelope(why)) if why.contains("duplicate field")
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

    /// The canonical form is a contract with every central and every record already sealed:
    /// a change to how it is written must not change one byte of it.
    #[test]
    fn the_canonical_form_and_hash_of_a_known_record_never_change() {
        let mut a = env(1);
        a.crossing
            .flags
            .push(crate::Flag::new("plate_unread", "a \"quoted\" reason, ü"));
        let h = seal(&mut a, &GENESIS, &key(7));
        let tree: Value = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
        let canonical = String::from_utf8(canonical_bytes(&tree)).unwrap();
        assert_eq!(
            canonical,
            r#"{"crossing":{"arrived_at":"2026-11-21T10:00:00Z","dimensions":null,"flags":[{"code":"plate_unread","reason":"a \"quoted\" reason, ü"}],"id":"00000000-0000-0000-0000-000000000000","lane":"L1","left_at":"2026-11-21T10:00:00Z","plate":{"confidence":0.97,"format":null,"frames":3,"text":"1234AB01"},"post":"TJDYU-01","scan":null,"weight":null},"post":"TJDYU-01","recorded_at":"2026-11-21T10:00:00Z","seal":{"key":"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c","prev":"0000000000000000000000000000000000000000000000000000000000000000"},"seq":1}"#
        );
        assert_eq!(
            to_hex(&h),
            "d9abaade8487ceca7356795e8af5aaf61b542e7ca26cd20b26d02a7b91c511f9"
        );
    }

    fn sealed_chain(n: u64, k: &SigningKey) -> Vec<Vec<u8>> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let mut e = env(seq);
                e.crossing.id = uuid::Uuid::from_u128(u128::from(seq));
                prev = seal(&mut e, &prev, k);
                serde_json::to_vec(&e).unwrap()
            })
            .collect()
    }

    #[test]
    fn open_many_gives_each_payload_what_open_gives_it() {
        let k = key(7);
        let mut payloads = sealed_chain(40, &k);
        let good = open_many(&payloads);
        assert_eq!(good.len(), 40);
        for (p, r) in payloads.iter().zip(&good) {
            assert_eq!(r, &open(p));
            assert!(r.is_ok());
        }

        // Spoil a few: altered content, another key's signature, unsealed, not JSON.
        let mut altered: Value = serde_json::from_slice(&payloads[3]).unwrap();
        altered["crossing"]["lane"] = Value::from("L2");
        payloads[3] = serde_json::to_vec(&altered).unwrap();
        let mut resigned: RecordEnvelope = serde_json::from_slice(&payloads[10]).unwrap();
        let other = resigned.clone();
        let mut other_sealed = other;
        seal(&mut other_sealed, &GENESIS, &key(8));
        resigned.seal.as_mut().unwrap().sig = other_sealed.seal.unwrap().sig;
        payloads[10] = serde_json::to_vec(&resigned).unwrap();
        let mut unsealed: RecordEnvelope = serde_json::from_slice(&payloads[20]).unwrap();
        unsealed.seal = None;
        payloads[20] = serde_json::to_vec(&unsealed).unwrap();
        payloads[30] = b"not json".to_vec();

        let mixed = open_many(&payloads);
        for (i, (p, r)) in payloads.iter().zip(&mixed).enumerate() {
            assert_eq!(r, &open(p), "payload {i}");
            assert_eq!(
                r.is_ok(),
                ![3, 10, 20, 30].contains(&i),
                "payload {i}: {r:?}"
            );
        }
        assert_eq!(mixed[3], Err(SealError::HashMismatch));
        // With the hashes given (the text that is not JSON has none), the same.
        let hashed: Vec<(&Vec<u8>, [u8; 32])> = payloads
            .iter()
            .filter_map(|p| Some((p, text_hash(p)?)))
            .collect();
        assert_eq!(hashed.len(), payloads.len() - 1);
        for (p, hash) in &hashed {
            let tree: Value = serde_json::from_slice(p).unwrap();
            assert_eq!(*hash, tree_hash(&tree));
        }
        let texts: Vec<&Vec<u8>> = hashed.iter().map(|(p, _)| *p).collect();
        assert_eq!(open_many_hashed(&hashed), open_many(&texts));
        assert!(matches!(mixed[10], Err(SealError::BadSignature { .. })));
    }

    /// A signature with a small-order `R` that the permissive equation (and the batch
    /// equation) accepts, made with the private key: the strict check refuses it, and so does
    /// `open_many`, without refusing the records beside it.
    #[test]
    fn open_many_refuses_what_the_strict_check_refuses_even_where_the_batch_equation_holds() {
        use curve25519_dalek::scalar::Scalar;
        use sha2::Sha512;

        let k = key(7);
        let mut payloads = sealed_chain(8, &k);
        let mut weak: RecordEnvelope = serde_json::from_slice(&payloads[4]).unwrap();
        let hash = from_hex::<32>(&weak.seal.as_ref().unwrap().hash).unwrap();
        // R = the identity (small order); s = H(R || A || M) * a, so that s*B = R + H(..)*A.
        let r = CompressedEdwardsY::from_slice(&{
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        })
        .unwrap();
        let mut h = Sha512::new();
        h.update(r.as_bytes());
        h.update(k.verifying_key().as_bytes());
        h.update(hash);
        let kh = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s_scalar = kh * k.to_scalar();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(r.as_bytes());
        sig[32..].copy_from_slice(s_scalar.as_bytes());
        let sig = Signature::from_bytes(&sig);
        assert!(
            k.verifying_key().verify(&hash, &sig).is_ok(),
            "the permissive check accepts it"
        );
        let vks = vec![k.verifying_key(); 1];
        assert!(
            ed25519_dalek::verify_batch(&[&hash[..]], &[sig], &vks).is_ok(),
            "the batch equation accepts it"
        );
        weak.seal.as_mut().unwrap().sig = to_hex(&sig.to_bytes());
        payloads[4] = serde_json::to_vec(&weak).unwrap();

        assert!(matches!(
            open(&payloads[4]),
            Err(SealError::BadSignature { .. })
        ));
        let many = open_many(&payloads);
        for (i, r) in many.iter().enumerate() {
            assert_eq!(r.is_ok(), i != 4, "payload {i}: {r:?}");
        }
    }

    #[test]
    fn a_y_at_or_above_the_prime_is_not_canonical() {
        let mut p = [0xffu8; 32];
        p[31] = 0x7f;
        p[0] = 0xed; // 2^255 - 19
        assert!(!y_is_canonical(&p));
        p[0] = 0xec; // p - 1
        assert!(y_is_canonical(&p));
        p[31] = 0xff; // the sign bit is not part of y
        assert!(y_is_canonical(&p));
        p[0] = 0xff;
        assert!(!y_is_canonical(&p));
        assert!(y_is_canonical(&[0; 32]));
        // Agrees with decompress-then-compress on points near the top.
        for low in 0xe0..=0xffu8 {
            let mut b = [0xffu8; 32];
            b[31] = 0x7f;
            b[0] = low;
            if let Some(point) = CompressedEdwardsY(b).decompress() {
                assert_eq!(y_is_canonical(&b), point.compress().0 == b, "{low:#x}");
            }
        }
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
