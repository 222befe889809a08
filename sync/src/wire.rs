//! # The wire format of records: batches, compact seals, zstd
//!
//! The uplink publishes records in **batches**: consecutive records of one post, in seq order,
//! in one MQTT message on `topics::records(post)`:
//!
//! ```text
//! b"BCPB" | version (1 byte, 1) | zstd frame of JSON {"post", "key", "records": [...]}
//! ```
//!
//! Each entry of `records` is the sealed envelope as JSON with its seal made **compact**: only
//! `sig` is always sent. `key` is sent once per batch (kept in an entry only if it differs);
//! `prev` is left out when it is the hash of the entry before it (always true inside a batch of
//! one chain, so only the first entry carries it); `hash` is left out always, because the
//! receiver recomputes it from the canonical form ([`bcp_record::seal::tree_hash`]). What is
//! left that cannot compress is the 64-byte signature; zstd takes the repetition out of the
//! rest. [`decode_batch`] rebuilds each full sealed envelope, which the store then verifies as
//! if it had come alone: a compact seal changes nothing about what is checked.
//!
//! A payload that starts with `{` is a single sealed envelope in plain JSON (what schema
//! version 1 posts and hand-made test messages send); central accepts both.
//!
//! Decoding is bounded: at most [`MAX_DECODED_BYTES`] after decompression (a zstd bomb is an
//! error value, not an allocation).

use bcp_record::seal::{to_hex, tree_hash};
use bcp_record::RecordEnvelope;
use serde_json::{Map, Value};

/// The first bytes of a batch payload.
pub const BATCH_MAGIC: &[u8; 4] = b"BCPB";
/// The batch format version this build writes and reads.
pub const BATCH_VERSION: u8 = 1;
/// The largest decompressed batch accepted.
pub const MAX_DECODED_BYTES: usize = 8 * 1024 * 1024;
/// zstd level: 3 is zstd's default, fast and within a few percent of the best on this data.
const ZSTD_LEVEL: i32 = 3;

/// Why a payload is not a batch central can take apart.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("batch version {0} is not supported (this build reads version {BATCH_VERSION})")]
    Version(u8),
    #[error("batch does not decompress (or is larger than {MAX_DECODED_BYTES} bytes): {0}")]
    Decompress(std::io::Error),
    #[error("batch is not the expected JSON: {0}")]
    Json(String),
    #[error("a record cannot be encoded: {0}")]
    Encode(String),
}

/// Encodes sealed, consecutive records of one post as one batch payload.
pub fn encode_batch(post: &str, records: &[RecordEnvelope]) -> Result<Vec<u8>, WireError> {
    let key = records
        .first()
        .and_then(|r| r.seal.as_ref())
        .map(|s| s.key.clone())
        .unwrap_or_default();
    let mut entries = Vec::with_capacity(records.len());
    let mut prev_hash: Option<&str> = None;
    for r in records {
        // The tree is taken from the record's JSON text, not with `to_value`: an f32 widened by
        // `to_value` would print differently from the text that was sealed.
        let text = serde_json::to_string(r).map_err(|e| WireError::Encode(e.to_string()))?;
        let mut tree: Value =
            serde_json::from_str(&text).map_err(|e| WireError::Encode(e.to_string()))?;
        if let (Some(seal), Some(Value::Object(s))) = (r.seal.as_ref(), tree.get_mut("seal")) {
            s.remove("hash");
            if s.get("key").and_then(Value::as_str) == Some(key.as_str()) {
                s.remove("key");
            }
            if prev_hash == Some(seal.prev.as_str()) {
                s.remove("prev");
            }
            prev_hash = Some(seal.hash.as_str());
        } else {
            prev_hash = None;
        }
        entries.push(tree);
    }
    let mut body = Map::new();
    body.insert("post".into(), Value::from(post));
    body.insert("key".into(), Value::from(key));
    body.insert("records".into(), Value::Array(entries));
    let json =
        serde_json::to_vec(&Value::Object(body)).map_err(|e| WireError::Encode(e.to_string()))?;
    let compressed =
        zstd::bulk::compress(&json, ZSTD_LEVEL).map_err(|e| WireError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(5 + compressed.len());
    out.extend_from_slice(BATCH_MAGIC);
    out.push(BATCH_VERSION);
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// True when `payload` is a batch (it starts with [`BATCH_MAGIC`]).
pub fn is_batch(payload: &[u8]) -> bool {
    payload.starts_with(BATCH_MAGIC)
}

/// One record of a batch, rebuilt as the full sealed envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRecord {
    /// The envelope as JSON, as if it had been sent alone.
    pub json: Vec<u8>,
    /// The same, as the JSON tree the text parses into (what [`bcp_record::seal::open_many_hashed`]
    /// takes, so that the store need not parse the text again).
    pub tree: Value,
    /// [`tree_hash`] of `tree` (computed here to rebuild the seal's `hash`; not again by the store).
    pub hash: [u8; 32],
}

/// Takes a batch apart into full sealed envelopes as JSON, one per record, in batch order.
/// Nothing is verified here: the store verifies each record.
pub fn decode_batch(payload: &[u8]) -> Result<Vec<Vec<u8>>, WireError> {
    Ok(decode_batch_records(payload)?
        .into_iter()
        .map(|r| r.json)
        .collect())
}

/// [`decode_batch`], each record with its JSON tree too.
pub fn decode_batch_records(payload: &[u8]) -> Result<Vec<DecodedRecord>, WireError> {
    let rest = payload
        .strip_prefix(BATCH_MAGIC.as_slice())
        .unwrap_or(payload);
    let (&version, compressed) = rest
        .split_first()
        .ok_or_else(|| WireError::Json("empty batch".into()))?;
    if version != BATCH_VERSION {
        return Err(WireError::Version(version));
    }
    let json =
        zstd::bulk::decompress(compressed, MAX_DECODED_BYTES).map_err(WireError::Decompress)?;
    let mut body: Value =
        serde_json::from_slice(&json).map_err(|e| WireError::Json(e.to_string()))?;
    let key = body
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(Value::Array(records)) = body.get_mut("records").map(Value::take) else {
        return Err(WireError::Json("no records array".into()));
    };
    let mut out = Vec::with_capacity(records.len());
    let mut prev: Option<String> = None;
    for mut tree in records {
        if let Some(Value::Object(s)) = tree.get_mut("seal") {
            s.entry("key").or_insert_with(|| Value::from(key.clone()));
            if let Some(p) = &prev {
                s.entry("prev").or_insert_with(|| Value::from(p.clone()));
            }
        }
        let hash = tree_hash(&tree);
        if let Some(Value::Object(s)) = tree.get_mut("seal") {
            let hex = to_hex(&hash);
            s.insert("hash".into(), Value::from(hex.clone()));
            prev = Some(hex);
        } else {
            prev = None;
        }
        let json = serde_json::to_vec(&tree).map_err(|e| WireError::Json(e.to_string()))?;
        out.push(DecodedRecord { json, tree, hash });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;
    use bcp_record::seal::{open, seal, GENESIS};
    use bcp_record::Crossing;
    use ed25519_dalek::SigningKey;

    fn chain(n: u64, start_prev: [u8; 32]) -> Vec<RecordEnvelope> {
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut prev = start_prev;
        (1..=n)
            .map(|seq| {
                let now = chrono::Utc::now();
                let mut env = RecordEnvelope {
                    post: "P".into(),
                    seq,
                    recorded_at: now,
                    crossing: Crossing {
                        id: uuid::Uuid::now_v7(),
                        post: "P".into(),
                        lane: "L1".into(),
                        arrived_at: now,
                        left_at: now,
                        plate: Some(bcp_record::PlateRead {
                            text: format!("{seq:04}AB01"),
                            confidence: 0.93,
                            format: Some("TJ".into()),
                            frames: 5,
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
                };
                prev = seal(&mut env, &prev, &key);
                env
            })
            .collect()
    }

    #[test]
    fn a_batch_round_trips_to_records_that_verify() {
        let records = chain(20, [9; 32]);
        let payload = encode_batch("P", &records).unwrap();
        assert!(is_batch(&payload));
        let singles: usize = records
            .iter()
            .map(|r| serde_json::to_vec(r).unwrap().len())
            .sum();
        assert!(
            payload.len() * 3 < singles,
            "{} vs {singles}",
            payload.len()
        );
        let decoded = decode_batch(&payload).unwrap();
        assert_eq!(decoded.len(), 20);
        for (d, r) in decoded.iter().zip(&records) {
            let opened = open(d).unwrap();
            assert_eq!(&opened.envelope, r);
        }
        assert_eq!(open(&decoded[0]).unwrap().prev, [9; 32]);
    }

    #[test]
    fn the_posts_border_fields_cost_next_to_nothing_per_record_on_the_wire() {
        let plain = chain(100, [9; 32]);
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut prev = [9; 32];
        let stamped: Vec<RecordEnvelope> = plain
            .iter()
            .map(|r| {
                let mut env = r.clone();
                env.crossing.direction = Some(bcp_record::Direction::Entry);
                env.crossing.customs_office_at_border_reference = Some("TJ000401".into());
                prev = seal(&mut env, &prev, &key);
                env
            })
            .collect();
        let size = |records: &[RecordEnvelope]| encode_batch("P", records).unwrap().len();
        let (a, b) = (size(&plain), size(&stamped));
        // The same office and direction on every record: zstd keeps one copy per batch.
        assert!(
            b < a + 100 * 2,
            "{a} bytes plain, {b} with the border fields"
        );
    }

    #[test]
    fn an_altered_record_in_a_batch_no_longer_verifies() {
        let records = chain(3, GENESIS);
        let mut altered = records.clone();
        altered[1].crossing.lane = "L9".into();
        let decoded = decode_batch(&encode_batch("P", &altered).unwrap()).unwrap();
        assert!(open(&decoded[0]).is_ok());
        // The recomputed hash is that of the altered content: the signature no longer matches.
        assert!(open(&decoded[1]).is_err());
    }

    #[test]
    fn garbage_and_bombs_are_errors() {
        assert!(matches!(decode_batch(b"BCPB"), Err(WireError::Json(_))));
        assert!(matches!(
            decode_batch(b"BCPB\x07xx"),
            Err(WireError::Version(7))
        ));
        assert!(matches!(
            decode_batch(b"BCPB\x01not zstd"),
            Err(WireError::Decompress(_))
        ));
        let bomb = zstd::bulk::compress(&vec![b' '; MAX_DECODED_BYTES + 1], 3).unwrap();
        let mut payload = b"BCPB\x01".to_vec();
        payload.extend_from_slice(&bomb);
        assert!(matches!(
            decode_batch(&payload),
            Err(WireError::Decompress(_))
        ));
        let not_json = zstd::bulk::compress(b"[1,2", 3).unwrap();
        let mut payload = b"BCPB\x01".to_vec();
        payload.extend_from_slice(&not_json);
        assert!(matches!(decode_batch(&payload), Err(WireError::Json(_))));
    }
}
