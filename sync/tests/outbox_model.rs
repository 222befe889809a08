//! Model-based property test: the outbox (a real SQLite file) and the [`DeliveryTracker`],
//! driven exactly as `run_uplink` drives them, against a naive in-memory model.
//!
//! Actions: `Append(n)` (a lane commits n crossings in one batch), `Send` (the uplink publishes
//! what the window allows onto the simulated wire), `Deliver(k)` (the broker hands the first k
//! messages on the wire to central), `Ack` (central's ack of its contiguous prefix reaches the
//! post), `Reconnect` (the link drops: everything on the wire is lost; then a CONNACK),
//! `Timeout` (the ack timeout fires), `Reopen` (the agent restarts: the outbox is reopened from
//! its file and a new tracker starts from its stats; the wire is lost).
//!
//! The model is three numbers and a set: records appended, central's set of received seqs, and
//! the ack position applied at the post. After every action the outbox must agree with it; after
//! the last one, a loss-free drain must bring central exactly the appended records.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bcp_sync::{DeliveryTracker, Outbox, PostKey};
use common::{crossing, POST};
use proptest::prelude::*;

const WINDOW: usize = 8;
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Action {
    Append(u8),
    Send,
    Deliver(u8),
    Ack,
    Reconnect,
    Timeout,
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (1u8..6).prop_map(Action::Append),
        3 => Just(Action::Send),
        3 => (1u8..10).prop_map(Action::Deliver),
        2 => Just(Action::Ack),
        1 => Just(Action::Reconnect),
        1 => Just(Action::Timeout),
        1 => Just(Action::Reopen),
    ]
}

/// The naive model.
#[derive(Debug, Default)]
struct Model {
    appended: u64,
    central: BTreeSet<u64>,
    /// What the post has applied from central's acks.
    delivered: u64,
}

impl Model {
    fn central_prefix(&self) -> u64 {
        let mut n = 0;
        while self.central.contains(&(n + 1)) {
            n += 1;
        }
        n
    }
}

/// The system under test, wired as `run_uplink` wires it.
struct System {
    dir: tempfile::TempDir,
    outbox: Outbox,
    tracker: DeliveryTracker,
    wire: VecDeque<u64>,
    now: Instant,
    next_crossing: u32,
}

impl System {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(&dir);
        let now = Instant::now();
        let mut tracker = DeliveryTracker::new(0, WINDOW, ACK_TIMEOUT);
        tracker.handle_connected(now);
        Self {
            dir,
            outbox,
            tracker,
            wire: VecDeque::new(),
            now,
            next_crossing: 0,
        }
    }

    /// `send_pending` of the uplink, publishing onto the wire; checks the order it sends in.
    fn send(&mut self) {
        self.tracker.note_head(self.outbox.last_seq().unwrap());
        while let Some((after, limit)) = self.tracker.next_batch() {
            let records = self.outbox.pending(after, limit).unwrap();
            if records.is_empty() {
                return;
            }
            for (expect, r) in (after + 1..).zip(records) {
                assert_eq!(r.seq, expect, "sent out of order or with a hole");
                assert!(r.seal.is_some(), "an unsealed record went out");
                self.wire.push_back(r.seq);
                self.tracker.handle_sent(self.now, r.seq);
            }
        }
    }
}

fn open(dir: &tempfile::TempDir) -> Outbox {
    Outbox::open_with_key(
        &dir.path().join("outbox.db"),
        POST,
        PostKey::from_seed([1; 32]),
    )
    .unwrap()
}

fn check(sys: &System, model: &Model) {
    let stats = sys.outbox.stats().unwrap();
    assert_eq!(stats.last_seq, model.appended, "last_seq");
    assert_eq!(stats.last_acked_seq, model.delivered, "last_acked_seq");
    assert_eq!(stats.depth, model.appended - model.delivered, "depth");
    assert_eq!(sys.tracker.acked(), model.delivered, "tracker acked");
    // A window of backlog plus, during a live/backlog split, a window of live records.
    assert!(
        sys.tracker.in_flight() <= 2 * WINDOW as u64,
        "window exceeded"
    );
    let pending: Vec<u64> = sys
        .outbox
        .pending(0, usize::MAX)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    let expected: Vec<u64> = (model.delivered + 1..=model.appended).collect();
    assert_eq!(pending, expected, "pending");
    // Central never holds what was not appended, and the post never applies more than central has.
    assert!(model.central.iter().all(|&s| s >= 1 && s <= model.appended));
    assert!(model.delivered <= model.central_prefix());
}

fn step(sys: &mut System, model: &mut Model, a: &Action) {
    match *a {
        Action::Append(n) => {
            let batch: Vec<_> = (0..n)
                .map(|_| {
                    sys.next_crossing += 1;
                    crossing(POST, sys.next_crossing)
                })
                .collect();
            let envs = sys.outbox.append_batch(&batch, chrono::Utc::now()).unwrap();
            for (i, e) in envs.iter().enumerate() {
                assert_eq!(e.seq, model.appended + 1 + i as u64);
            }
            model.appended += u64::from(n);
        }
        Action::Send => sys.send(),
        Action::Deliver(k) => {
            for _ in 0..k {
                if let Some(seq) = sys.wire.pop_front() {
                    model.central.insert(seq); // a duplicate is a no-op at central
                }
            }
        }
        Action::Ack => {
            let up_to = model.central_prefix();
            if let bcp_sync::uplink::AckOutcome::Advanced { up_to_seq } =
                sys.tracker.handle_ack(sys.now, up_to)
            {
                assert!(up_to_seq <= up_to);
                sys.outbox.mark_delivered(up_to_seq).unwrap();
                model.delivered = model.delivered.max(up_to_seq);
            }
        }
        Action::Reconnect => {
            sys.wire.clear();
            sys.tracker.handle_disconnected();
            sys.tracker.handle_connected(sys.now);
        }
        Action::Timeout => {
            sys.now += ACK_TIMEOUT;
            sys.tracker.handle_timeout(sys.now);
        }
        Action::Reopen => {
            sys.wire.clear();
            sys.outbox = open(&sys.dir);
            let stats = sys.outbox.stats().unwrap();
            sys.tracker = DeliveryTracker::new(stats.last_acked_seq, WINDOW, ACK_TIMEOUT);
            sys.tracker.handle_connected(sys.now);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn outbox_and_tracker_agree_with_the_model(actions in proptest::collection::vec(action(), 1..60)) {
        let mut sys = System::new();
        let mut model = Model::default();
        for a in &actions {
            step(&mut sys, &mut model, a);
            check(&sys, &model);
        }
        // Drain over a loss-free link: every appended record reaches central, and the post
        // learns it. Bounded: each round moves at least one record or ends.
        for _ in 0..=(model.appended * 2 + 4) {
            if model.delivered == model.appended {
                break;
            }
            step(&mut sys, &mut model, &Action::Send);
            step(&mut sys, &mut model, &Action::Deliver(u8::MAX));
            step(&mut sys, &mut model, &Action::Ack);
            check(&sys, &model);
            if sys.wire.is_empty() && sys.tracker.next_batch().is_none() && model.delivered < model.appended {
                // The window is full of records the wire lost: what the ack timeout is for.
                step(&mut sys, &mut model, &Action::Timeout);
            }
        }
        prop_assert_eq!(model.delivered, model.appended);
        prop_assert_eq!(model.central.len() as u64, model.appended);
        prop_assert_eq!(sys.outbox.stats().unwrap().depth, 0);
        prop_assert!(sys.outbox.verify_chain().unwrap().first_bad.is_none());
    }
}
