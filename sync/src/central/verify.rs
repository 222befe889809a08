//! # Verdicts: may a sealed record be stored?
//!
//! Pure: [`judge`] is given a record whose hash and signature already hold against the key it
//! names ([`bcp_record::seal::open`]) and what the store holds around it, and decides. The store
//! reads the neighbours and applies the verdict in one transaction.
//!
//! ## Rules, in order
//! 1. **Key.** The post's registered (pinned) key must be the record's key, else
//!    [`Rejection::WrongKey`]. A post without a key is pinned to this record's key under
//!    [`KeyPolicy::PinFirst`] (trust on first use, logged) or rejected under
//!    [`KeyPolicy::RegisteredOnly`].
//! 2. **Same seq.** A record already stored at `(post, seq)` with the same hash is a
//!    [`Verdict::Duplicate`] (a resend after a lost ack: acknowledged again, not stored twice).
//!    With a different hash it is [`Rejection::Conflict`]: a replay of a record from another chain
//!    (an earlier life of the post's outbox, or a forgery with a stolen key).
//! 3. **Same crossing.** The crossing id already stored under another seq: [`Rejection::Replayed`].
//! 4. **Chain.** seq 1 must start from [`GENESIS`]; if seq - 1 is stored, this record's `prev`
//!    must be its hash; if seq + 1 is stored, its `prev` must be this record's hash. A stored
//!    neighbour without a hash (written by schema version 1, before seals) is not compared.
//! 5. Otherwise [`Verdict::Store`]; `gap_before` when seq > 1 and seq - 1 is not stored (the gap
//!    is shown by `bcp-central posts` until the missing records arrive).

use bcp_record::seal::{to_hex, Opened, GENESIS};

/// What central does with a post it has no key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyPolicy {
    /// Pin the key of the post's first record (trust on first use; logged at WARN).
    #[default]
    PinFirst,
    /// Reject records of posts whose key was not given to central.
    RegisteredOnly,
}

/// What the store holds around the record being judged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Surroundings {
    /// The post's registered key.
    pub pinned_key: Option<[u8; 32]>,
    /// A record stored at the same `(post, seq)`: its hash (`None` for a version 1 row).
    pub same_seq: Option<Option<[u8; 32]>>,
    /// The same crossing id stored elsewhere: `(post, seq)`.
    pub same_crossing: Option<(String, u64)>,
    /// Record seq - 1, if stored: its hash.
    pub before: Option<Option<[u8; 32]>>,
    /// Record seq + 1, if stored: its `prev`.
    pub after_prev: Option<Option<[u8; 32]>>,
}

/// Why a record with a valid signature is still not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("signed with key {found}, but post {post} has key {pinned}")]
    WrongKey {
        post: String,
        found: String,
        pinned: String,
    },
    #[error("no public key registered for post {post} (key policy: registered only)")]
    UnknownPost { post: String },
    #[error("conflict: {post} #{seq} is already stored with a different hash (replayed or forged record)")]
    Conflict { post: String, seq: u64 },
    #[error("replay: crossing {crossing} is already stored as {stored_post} #{stored_seq}")]
    Replayed {
        crossing: String,
        stored_post: String,
        stored_seq: u64,
    },
    #[error("broken chain: {post} #{seq} does not follow the stored #{before}")]
    BrokenBefore { post: String, seq: u64, before: u64 },
    #[error("broken chain: the stored {post} #{after} does not follow #{seq}")]
    BrokenAfter { post: String, seq: u64, after: u64 },
    #[error("broken chain: {post} #1 does not start from the genesis hash")]
    BadGenesis { post: String },
}

/// The decision for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Store {
        /// The post had no key; pin this record's key.
        pin_key: bool,
        /// seq - 1 is not stored.
        gap_before: bool,
    },
    Duplicate,
    Reject(Rejection),
}

/// Judges `rec` (see the module documentation).
pub fn judge(rec: &Opened, around: &Surroundings, policy: KeyPolicy) -> Verdict {
    let env = &rec.envelope;
    let post = || env.post.clone();
    let pin_key = match around.pinned_key {
        Some(pinned) if pinned != rec.key => {
            return Verdict::Reject(Rejection::WrongKey {
                post: post(),
                found: to_hex(&rec.key),
                pinned: to_hex(&pinned),
            })
        }
        Some(_) => false,
        None if policy == KeyPolicy::RegisteredOnly => {
            return Verdict::Reject(Rejection::UnknownPost { post: post() })
        }
        None => true,
    };
    if let Some(stored) = around.same_seq {
        return if stored.is_none_or(|h| h == rec.hash) {
            Verdict::Duplicate
        } else {
            Verdict::Reject(Rejection::Conflict {
                post: post(),
                seq: env.seq,
            })
        };
    }
    if let Some((stored_post, stored_seq)) = &around.same_crossing {
        return Verdict::Reject(Rejection::Replayed {
            crossing: env.crossing.id.to_string(),
            stored_post: stored_post.clone(),
            stored_seq: *stored_seq,
        });
    }
    if env.seq == 1 && rec.prev != GENESIS {
        return Verdict::Reject(Rejection::BadGenesis { post: post() });
    }
    if let Some(Some(before)) = around.before {
        if before != rec.prev {
            return Verdict::Reject(Rejection::BrokenBefore {
                post: post(),
                seq: env.seq,
                before: env.seq - 1,
            });
        }
    }
    if let Some(Some(after_prev)) = around.after_prev {
        if after_prev != rec.hash {
            return Verdict::Reject(Rejection::BrokenAfter {
                post: post(),
                seq: env.seq,
                after: env.seq + 1,
            });
        }
    }
    Verdict::Store {
        pin_key,
        gap_before: env.seq > 1 && around.before.is_none(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;
    use bcp_record::seal::{open, seal};
    use bcp_record::{Crossing, RecordEnvelope};
    use chrono::Utc;
    use ed25519_dalek::SigningKey;

    fn rec(seq: u64, prev: &[u8; 32], key: u8) -> Opened {
        let now = Utc::now();
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
            },
            seal: None,
        };
        seal(&mut env, prev, &SigningKey::from_bytes(&[key; 32]));
        open(&serde_json::to_vec(&env).unwrap()).unwrap()
    }

    #[test]
    fn first_record_pins_or_is_refused_by_policy() {
        let r = rec(1, &GENESIS, 1);
        let none = Surroundings::default();
        assert_eq!(
            judge(&r, &none, KeyPolicy::PinFirst),
            Verdict::Store {
                pin_key: true,
                gap_before: false
            }
        );
        assert!(matches!(
            judge(&r, &none, KeyPolicy::RegisteredOnly),
            Verdict::Reject(Rejection::UnknownPost { .. })
        ));
    }

    #[test]
    fn wrong_key_conflict_replay_and_chain_breaks_are_rejected() {
        let a = rec(1, &GENESIS, 1);
        let b = rec(2, &a.hash, 1);
        let pinned = Surroundings {
            pinned_key: Some(a.key),
            ..Default::default()
        };
        let forged = rec(2, &a.hash, 2);
        assert!(matches!(
            judge(&forged, &pinned, KeyPolicy::PinFirst),
            Verdict::Reject(Rejection::WrongKey { .. })
        ));
        // Same seq, same hash: a resend. Different hash: a conflict.
        let at_2 = |h| Surroundings {
            same_seq: Some(Some(h)),
            ..pinned.clone()
        };
        assert_eq!(
            judge(&b, &at_2(b.hash), KeyPolicy::PinFirst),
            Verdict::Duplicate
        );
        assert!(matches!(
            judge(&b, &at_2(a.hash), KeyPolicy::PinFirst),
            Verdict::Reject(Rejection::Conflict { seq: 2, .. })
        ));
        let replay = Surroundings {
            same_crossing: Some(("P".into(), 7)),
            ..pinned.clone()
        };
        assert!(matches!(
            judge(&b, &replay, KeyPolicy::PinFirst),
            Verdict::Reject(Rejection::Replayed { stored_seq: 7, .. })
        ));
        let not_genesis = rec(1, &[9; 32], 1);
        assert!(matches!(
            judge(&not_genesis, &pinned, KeyPolicy::PinFirst),
            Verdict::Reject(Rejection::BadGenesis { .. })
        ));
        let wrong_before = Surroundings {
            before: Some(Some([5; 32])),
            ..pinned.clone()
        };
        assert!(matches!(
            judge(&b, &wrong_before, KeyPolicy::PinFirst),
            Verdict::Reject(Rejection::BrokenBefore { before: 1, .. })
        ));
        let wrong_after = Surroundings {
            after_prev: Some(Some([5; 32])),
            ..pinned.clone()
        };
        assert!(matches!(
            judge(&a, &wrong_after, KeyPolicy::PinFirst),
            Verdict::Reject(Rejection::BrokenAfter { after: 2, .. })
        ));
    }

    #[test]
    fn chain_links_gaps_and_legacy_neighbours() {
        let a = rec(1, &GENESIS, 1);
        let b = rec(2, &a.hash, 1);
        let c = rec(3, &b.hash, 1);
        let linked = Surroundings {
            pinned_key: Some(a.key),
            before: Some(Some(a.hash)),
            after_prev: Some(Some(c.envelope.seal.as_ref().map_or(GENESIS, |_| b.hash))),
            ..Default::default()
        };
        let store = |gap_before| Verdict::Store {
            pin_key: false,
            gap_before,
        };
        assert_eq!(judge(&b, &linked, KeyPolicy::PinFirst), store(false));
        let gap = Surroundings {
            pinned_key: Some(a.key),
            ..Default::default()
        };
        assert_eq!(judge(&c, &gap, KeyPolicy::PinFirst), store(true));
        // A version 1 neighbour has no hash to compare with.
        let legacy = Surroundings {
            pinned_key: Some(a.key),
            before: Some(None),
            ..Default::default()
        };
        assert_eq!(judge(&c, &legacy, KeyPolicy::PinFirst), store(false));
    }
}
