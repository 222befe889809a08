//! # One message's records, judged together (the same for every database)
//!
//! Pure: no SQL, no clock. A backend receives one MQTT message in one transaction in three
//! steps, of which only the first and the last touch its database:
//!
//! 1. [`Lookups::of`] says what to read: the post's key, the chain rows at `seq - 1`, `seq` and
//!    `seq + 1` of every record, and the rows holding the records' crossing ids. The backend
//!    reads them into a [`Loaded`] (SQLite row by row, PostgreSQL in one query each).
//! 2. [`decide`] judges the records in the message's order with [`judge`], updating its copy of
//!    [`Loaded`] as it goes, so that a record sees the ones stored before it in the same message
//!    exactly as if each had been committed alone. It returns the outcomes and the [`Writes`].
//! 3. The backend applies the writes and advances the post's contiguous prefix, then commits.
//!
//! Records rejected before the verdict (seal broken, post not the topic's, seq 0) are never
//! looked up.

use std::collections::HashMap;

use bcp_record::seal::{from_hex, to_hex, Opened, SealError};
use chrono::{DateTime, Utc};

use super::store::{Outcome, StoredCrossing};
use super::verify::{judge, KeyPolicy, Surroundings, Verdict};

/// What a backend must read before [`decide`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Lookups {
    /// Every seq whose chain row (`hash`, `prev_hash`) is needed, ascending, no repeats.
    pub seqs: Vec<u64>,
    /// Every crossing id of the message's records.
    pub crossing_ids: Vec<String>,
}

impl Lookups {
    /// What the records of `post` among `opened` need.
    pub fn of(post: &str, opened: &[Result<Opened, SealError>]) -> Self {
        let mut seqs = Vec::new();
        let mut crossing_ids = Vec::new();
        for o in opened.iter().flatten() {
            let env = &o.envelope;
            if env.post != post || env.seq == 0 {
                continue;
            }
            seqs.extend([env.seq - 1, env.seq, env.seq.saturating_add(1)]);
            crossing_ids.push(env.crossing.id.to_string());
        }
        seqs.retain(|s| *s > 0);
        seqs.sort_unstable();
        seqs.dedup();
        Self { seqs, crossing_ids }
    }
}

/// What the store holds around a message's records (read in the receiving transaction).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Loaded {
    /// The post's key (hex), if it has one.
    pub pinned_key: Option<String>,
    /// `seq -> (hash, prev_hash)` of the post's stored rows among [`Lookups::seqs`].
    pub chain: HashMap<u64, (Option<String>, Option<String>)>,
    /// `crossing id -> (post, seq)` of the stored rows among [`Lookups::crossing_ids`].
    pub crossing_ids: HashMap<String, (String, u64)>,
}

/// A record to insert into `crossings`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewCrossing {
    pub seq: u64,
    pub crossing_id: String,
    pub recorded_at: DateTime<Utc>,
    /// The sealed JSON exactly as received.
    pub envelope: String,
    pub hash: String,
    pub prev_hash: String,
}

/// A record to keep aside in `rejected` (the message's topic and time are the same for all).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewRejected {
    /// Index into the message's payloads.
    pub payload: usize,
    pub reason: String,
    pub seq: Option<u64>,
}

/// What [`decide`] wants written, in this order: the key pin, the crossings, the rejections.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Writes {
    /// Pin this key (hex) as the post's (trust on first use).
    pub pin_key: Option<String>,
    pub crossings: Vec<NewCrossing>,
    pub rejected: Vec<NewRejected>,
}

/// Judges the records of one message of `post` (see the module documentation).
pub(crate) fn decide(
    post: &str,
    payloads: &[Vec<u8>],
    opened: Vec<Result<Opened, SealError>>,
    mut loaded: Loaded,
    policy: KeyPolicy,
    received_at: DateTime<Utc>,
) -> (Vec<Outcome>, Writes) {
    let mut writes = Writes::default();
    let mut outcomes = Vec::with_capacity(payloads.len());
    for (i, (payload, opened)) in payloads.iter().zip(opened).enumerate() {
        let mut reject = |seq: Option<u64>, reason: String| {
            writes.rejected.push(NewRejected {
                payload: i,
                reason: reason.clone(),
                seq,
            });
            Outcome::Rejected(reason)
        };
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) => {
                outcomes.push(reject(None, e.to_string()));
                continue;
            }
        };
        let env = &opened.envelope;
        let seq = env.seq;
        if env.post != post {
            let reason = format!(
                "envelope post {:?} does not match the topic's post {post:?}",
                env.post
            );
            outcomes.push(reject(Some(seq), reason));
            continue;
        }
        if seq == 0 {
            let reason = "sequence number 0 (sequences start at 1)".to_owned();
            outcomes.push(reject(Some(0), reason));
            continue;
        }
        let around = surroundings(&loaded, &opened);
        let outcome = match judge(&opened, &around, policy) {
            Verdict::Duplicate => Outcome::Duplicate,
            Verdict::Reject(why) => reject(Some(seq), why.to_string()),
            Verdict::Store {
                pin_key,
                gap_before,
            } => {
                let key = to_hex(&opened.key);
                if pin_key {
                    tracing::warn!(post, public_key = %key, "no key registered for this post: pinned the key of its first record (trust on first use)");
                    loaded.pinned_key = Some(key.clone());
                    writes.pin_key = Some(key);
                }
                if gap_before {
                    tracing::warn!(
                        post,
                        seq,
                        "gap: records before this one have not arrived yet"
                    );
                }
                let (hash, prev_hash) = (to_hex(&opened.hash), to_hex(&opened.prev));
                let crossing_id = env.crossing.id.to_string();
                loaded
                    .chain
                    .insert(seq, (Some(hash.clone()), Some(prev_hash.clone())));
                loaded
                    .crossing_ids
                    .insert(crossing_id.clone(), (post.to_owned(), seq));
                writes.crossings.push(NewCrossing {
                    seq,
                    crossing_id,
                    recorded_at: env.recorded_at,
                    // The payload opened, so it is JSON, so UTF-8 (checked the fast way).
                    envelope: std::str::from_utf8(payload).map_or_else(
                        |_| String::from_utf8_lossy(payload).into_owned(),
                        str::to_owned,
                    ),
                    hash,
                    prev_hash,
                });
                let recorded_at = env.recorded_at;
                Outcome::Stored {
                    crossing: Box::new(StoredCrossing {
                        post: post.to_owned(),
                        seq,
                        received_at,
                        recorded_at,
                        // Moved, not cloned: the opened record is done with.
                        crossing: opened.envelope.crossing,
                    }),
                    gap_before,
                }
            }
        };
        outcomes.push(outcome);
    }
    (outcomes, writes)
}

/// What [`judge`] needs, from what was loaded (and stored so far in this message).
fn surroundings(loaded: &Loaded, rec: &Opened) -> Surroundings {
    let env = &rec.envelope;
    let hex = |h: &Option<String>| h.as_deref().and_then(from_hex::<32>);
    let hash_at = |seq: u64| loaded.chain.get(&seq).map(|(hash, _)| hex(hash));
    Surroundings {
        pinned_key: loaded.pinned_key.as_deref().and_then(from_hex::<32>),
        same_seq: hash_at(env.seq),
        same_crossing: loaded
            .crossing_ids
            .get(&env.crossing.id.to_string())
            .filter(|(p, s)| !(*p == env.post && *s == env.seq))
            .cloned(),
        before: if env.seq > 1 {
            hash_at(env.seq - 1)
        } else {
            None
        },
        after_prev: loaded
            .chain
            .get(&env.seq.saturating_add(1))
            .map(|(_, prev)| hex(prev)),
    }
}
