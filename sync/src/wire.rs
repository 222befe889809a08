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
//! receiver recomputes it from the canonical form ([`bcp_record::seal::text_hash`]). What is
//! left that cannot compress is the 64-byte signature; zstd takes the repetition out of the
//! rest. [`decode_batch`] rebuilds each full sealed envelope, which the store then verifies as
//! if it had come alone: a compact seal changes nothing about what is checked.
//!
//! A payload that starts with `{` is a single sealed envelope in plain JSON (what schema
//! version 1 posts and hand-made test messages send); central accepts both.
//!
//! Decoding is bounded: at most [`MAX_DECODED_BYTES`] after decompression (a zstd bomb is an
//! error value, not an allocation).

use std::ops::Range;

use bcp_record::seal::{text_hash, to_hex};
use bcp_record::RecordEnvelope;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

mod json_text;

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
    let texts = records
        .iter()
        .map(|r| serde_json::to_vec(r).map_err(|e| WireError::Encode(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    encode_sealed_texts(post, &texts)
}

/// [`encode_batch`] of the records' sealed JSON texts, as the outbox keeps them. Each text is
/// copied as it is but for its seal, which is made compact; no record is parsed into a tree or
/// a struct (see [`json_text`]).
pub fn encode_sealed_texts<T: AsRef<[u8]>>(post: &str, texts: &[T]) -> Result<Vec<u8>, WireError> {
    let seals = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let text = t.as_ref();
            json_text::object_members(text)
                .map(|members| seal_of(text, &members))
                .ok_or_else(|| {
                    WireError::Encode(format!("record {i} of the batch is not a JSON object"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = seals
        .first()
        .and_then(Option::as_ref)
        .and_then(|(_, s)| s.get("key"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut json = Vec::with_capacity(texts.iter().map(|t| t.as_ref().len()).sum::<usize>() + 256);
    json.extend_from_slice(b"{\"post\":");
    write_json(&mut json, post)?;
    json.extend_from_slice(b",\"key\":");
    write_json(&mut json, &key)?;
    json.extend_from_slice(b",\"records\":[");
    let mut prev_hash: Option<Value> = None;
    for (i, (text, seal)) in texts.iter().zip(seals).enumerate() {
        if i > 0 {
            json.push(b',');
        }
        let text = text.as_ref();
        let Some((at, mut seal)) = seal else {
            json.extend_from_slice(text);
            prev_hash = None;
            continue;
        };
        let hash = seal.remove("hash");
        if seal.get("key").and_then(Value::as_str) == Some(key.as_str()) {
            seal.remove("key");
        }
        if prev_hash.is_some() && seal.get("prev") == prev_hash.as_ref() {
            seal.remove("prev");
        }
        prev_hash = hash;
        write_with_seal(&mut json, text, &at, &seal)?;
    }
    json.extend_from_slice(b"]}");
    let compressed =
        zstd::bulk::compress(&json, ZSTD_LEVEL).map_err(|e| WireError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(5 + compressed.len());
    out.extend_from_slice(BATCH_MAGIC);
    out.push(BATCH_VERSION);
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// Where a record's seal is in its text, and the seal (when the record has one, an object).
/// A key written twice: the last one, as serde_json's tree has it.
fn seal_of(
    text: &[u8],
    members: &[json_text::Member<'_>],
) -> Option<(Range<usize>, Map<String, Value>)> {
    let member = members.iter().rfind(|m| m.key == "seal")?;
    let seal = serde_json::from_slice(text.get(member.value.clone())?).ok()?;
    Some((member.value.clone(), seal))
}

/// `text` with the value at `at` (its seal) replaced by `seal`.
fn write_with_seal(
    out: &mut Vec<u8>,
    text: &[u8],
    at: &Range<usize>,
    seal: &Map<String, Value>,
) -> Result<(), WireError> {
    let (before, after) = (text.get(..at.start), text.get(at.end..));
    let (Some(before), Some(after)) = (before, after) else {
        return Err(WireError::Json("a seal outside its record".into()));
    };
    out.extend_from_slice(before);
    write_json(out, seal)?;
    out.extend_from_slice(after);
    Ok(())
}

fn write_json(
    out: &mut Vec<u8>,
    value: &(impl serde::Serialize + ?Sized),
) -> Result<(), WireError> {
    serde_json::to_writer(out, value).map_err(|e| WireError::Encode(e.to_string()))
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
    /// [`text_hash`] of `json` (computed here to rebuild the seal's `hash`; not again by the
    /// store, which gives it to [`bcp_record::seal::open_many_hashed`]).
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

/// [`decode_batch`], each record with its hash. The batch's JSON is checked whole by
/// serde_json first; then each record is copied as the post sent it, its seal made whole (see
/// [`json_text`]).
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
    serde_json::from_slice::<IgnoredAny>(&json).map_err(|e| WireError::Json(e.to_string()))?;
    let body = json_text::object_members(&json)
        .ok_or_else(|| WireError::Json("the batch is not a JSON object".into()))?;
    let member = |name: &str| {
        body.iter()
            .rfind(|m| m.key == name)
            .and_then(|m| json.get(m.value.clone()))
    };
    let key = member("key")
        .and_then(|k| serde_json::from_slice::<String>(k).ok())
        .unwrap_or_default();
    let records = member("records").unwrap_or_default();
    let items = json_text::array_items(records)
        .ok_or_else(|| WireError::Json("no records array".into()))?;
    let mut out = Vec::with_capacity(items.len());
    let mut prev: Option<String> = None;
    for (i, item) in items.into_iter().enumerate() {
        let not_json = || WireError::Json(format!("record {i} of the batch is not JSON"));
        let entry = records.get(item).ok_or_else(not_json)?;
        let seal = json_text::object_members(entry).and_then(|members| seal_of(entry, &members));
        let Some((at, mut seal)) = seal else {
            // No seal to make whole: the store refuses it by name.
            prev = None;
            let hash = text_hash(entry).ok_or_else(not_json)?;
            out.push(DecodedRecord {
                json: entry.to_vec(),
                hash,
            });
            continue;
        };
        seal.entry("key")
            .or_insert_with(|| Value::from(key.clone()));
        if let Some(p) = prev.take() {
            seal.entry("prev").or_insert_with(|| Value::from(p));
        }
        let mut json = Vec::with_capacity(entry.len() + 200);
        write_with_seal(&mut json, entry, &at, &seal)?;
        // The canonical form leaves the seal's hash out: this is the record's hash whatever
        // `hash` the entry carried.
        let hash = text_hash(&json).ok_or_else(not_json)?;
        let hex = to_hex(&hash);
        seal.insert("hash".into(), Value::from(hex.clone()));
        prev = Some(hex);
        json.clear();
        write_with_seal(&mut json, entry, &at, &seal)?;
        out.push(DecodedRecord { json, hash });
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
    fn texts_are_sent_as_they_were_sealed_whatever_their_layout() {
        let records = chain(4, GENESIS);
        // Pretty-printed, an escaped key, a field this build does not know: only the seal is
        // rewritten, so each record still verifies and keeps what it had.
        let texts: Vec<Vec<u8>> = records
            .iter()
            .map(|r| serde_json::to_vec_pretty(r).unwrap())
            .collect();
        let payload = encode_sealed_texts("P", &texts).unwrap();
        let decoded = decode_batch(&payload).unwrap();
        for (d, r) in decoded.iter().zip(&records) {
            assert_eq!(&open(d).unwrap().envelope, r);
        }
        let escaped = String::from_utf8(texts[0].clone())
            .unwrap()
            .replace("\"lane\"", "\"l\\u0061ne\"");
        let decoded = decode_batch(&encode_sealed_texts("P", &[escaped]).unwrap()).unwrap();
        assert_eq!(open(&decoded[0]).unwrap().envelope, records[0]);

        let mut tree: Value = serde_json::to_value(&records[0]).unwrap();
        tree["extra"] = Value::from("from a newer post");
        let text = serde_json::to_vec(&tree).unwrap();
        let decoded = decode_batch(&encode_sealed_texts("P", &[&text]).unwrap()).unwrap();
        let kept: Value = serde_json::from_slice(&decoded[0]).unwrap();
        assert_eq!(kept["extra"], "from a newer post");
        // Signed without the field: the hash central computes is not the one signed.
        assert!(matches!(
            open(&decoded[0]),
            Err(bcp_record::seal::SealError::BadSignature { .. })
        ));
    }

    #[test]
    fn entries_that_are_not_sealed_records_are_handed_on_for_the_store_to_refuse() {
        let records = chain(2, GENESIS);
        let mut unsealed = records[0].clone();
        unsealed.seal = None;
        let texts = [
            serde_json::to_vec(&records[0]).unwrap(),
            b"5".to_vec(),
            serde_json::to_vec(&unsealed).unwrap(),
            serde_json::to_vec(&records[1]).unwrap(),
        ];
        // A post never sends these; central must still take each apart by itself.
        let Err(WireError::Encode(why)) = encode_sealed_texts("P", &texts) else {
            panic!("a number is not a record");
        };
        assert!(why.contains("record 1"), "{why}");
        let body = format!(
            r#"{{"post":"P","key":"","records":[{},5,{},{}]}}"#,
            String::from_utf8_lossy(&texts[0]),
            String::from_utf8_lossy(&texts[2]),
            String::from_utf8_lossy(&texts[3]),
        );
        let mut payload = b"BCPB\x01".to_vec();
        payload.extend_from_slice(&zstd::bulk::compress(body.as_bytes(), 3).unwrap());
        let decoded = decode_batch(&payload).unwrap();
        assert_eq!(decoded.len(), 4);
        assert_eq!(open(&decoded[0]).unwrap().envelope, records[0]);
        assert!(matches!(
            open(&decoded[1]),
            Err(bcp_record::seal::SealError::NotAnEnvelope(_))
        ));
        assert_eq!(
            open(&decoded[2]),
            Err(bcp_record::seal::SealError::Unsealed)
        );
        // Sent whole (its `prev` and `key` in it), a record after them still verifies.
        assert_eq!(open(&decoded[3]).unwrap().envelope, records[1]);
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

    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            "(\\PC|[\"\\\\{}])*".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("seal|key|prev|hash|sig|[a-z]{1,3}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever JSON a rogue client puts in a batch's records, each entry comes out as a
        /// JSON text of its own (for the store to refuse by name), never a panic.
        #[test]
        fn any_entries_come_out_one_json_text_each(
            entries in proptest::collection::vec(any_json(), 0..6),
            key in proptest::option::of("[0-9a-f]{0,8}"),
        ) {
            let mut body = Map::new();
            body.insert("post".into(), Value::from("P"));
            if let Some(key) = key {
                body.insert("key".into(), Value::from(key));
            }
            body.insert("records".into(), Value::from(entries.clone()));
            let mut payload = b"BCPB\x01".to_vec();
            let json = serde_json::to_vec(&Value::Object(body)).unwrap();
            payload.extend_from_slice(&zstd::bulk::compress(&json, 3).unwrap());
            let decoded = decode_batch_records(&payload).unwrap();
            proptest::prop_assert_eq!(decoded.len(), entries.len());
            for (d, entry) in decoded.iter().zip(&entries) {
                let back: Value = serde_json::from_slice(&d.json).unwrap();
                proptest::prop_assert_eq!(Some(d.hash), text_hash(&d.json));
                // Only the seal (an object) is rebuilt; everything else is as sent.
                let (Value::Object(mut back), Value::Object(mut sent)) = (back.clone(), entry.clone()) else {
                    proptest::prop_assert_eq!(&back, entry);
                    continue;
                };
                if matches!(sent.get("seal"), Some(Value::Object(_))) {
                    back.remove("seal");
                    sent.remove("seal");
                }
                proptest::prop_assert_eq!(back, sent);
            }
        }
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
