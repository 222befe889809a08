//! The model-based test of trains: generated sequences of what happens on the weigh rail,
//! the correlator's record against what a simple model predicts.

use super::*;

/// How a wagon's number shows to the reader in the model test.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NumberShows {
    Readable,
    /// No read at all (dirt, graffiti, a tank wagon's number out of the camera's view).
    NotRead,
    /// Read with a check digit that fails beyond any single look-alike repair.
    FailingCheck,
}

/// One thing that happens on the weigh rail while a train passes.
#[derive(Debug, Clone)]
enum RailOp {
    /// The next wagon rolls over the rail.
    Wagon {
        shows: NumberShows,
        kg: u32,
        containers: usize,
    },
    /// The train stands with the rail empty (wagons uncoupled and set aside behind the last one).
    Stand,
    /// The last wagon rolls back off the rail the way it came and comes on again.
    RollBack,
}

fn rail_op() -> impl Strategy<Value = RailOp> {
    let shows = prop_oneof![
        4 => Just(NumberShows::Readable),
        1 => Just(NumberShows::NotRead),
        1 => Just(NumberShows::FailingCheck),
    ];
    prop_oneof![
        6 => (shows, 200u32..1800, 0usize..3).prop_map(|(shows, kg, containers)| RailOp::Wagon {
            shows,
            kg: kg * 50,
            containers,
        }),
        1 => Just(RailOp::Stand),
        1 => Just(RailOp::RollBack),
    ]
}

/// A valid container code, different for each `k`.
fn container_code(k: usize) -> String {
    let head = format!("TGHU{:06}", 100_000 + k * 7);
    let d = identifiers::iso6346_check_digit(head.as_bytes()).unwrap_or(0);
    format!("{head}{d}")
}

/// The number as the reader sees it, if it does.
fn shown(number: &str, shows: NumberShows) -> Option<String> {
    match shows {
        NumberShows::Readable => Some(number.to_owned()),
        NumberShows::NotRead => None,
        NumberShows::FailingCheck => (0..10u8)
            .map(|d| format!("{}{d}", &number[..11]))
            .find(|s| {
                matches!(
                    identifiers::validate(IdKind::Wagon, s),
                    Err(e) if !matches!(e, IdError::Shape { .. })
                )
            }),
    }
}

/// What the model predicts of one wagon of the record.
#[derive(Debug, Clone, PartialEq)]
struct ModelWagon {
    number: Option<String>,
    kg: f64,
    containers: Vec<String>,
    flags: Vec<&'static str>,
}

/// The position a reason names first (`wagon 3: ..`, `.. between wagon 3 and ..`).
fn position_named(reason: &str) -> Option<usize> {
    reason.match_indices("wagon ").find_map(|(i, m)| {
        let rest = &reason[i + m.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// A train as a sequence of what happens on the weigh rail (wagons with readable,
    /// unread or misread numbers and their containers, stands where wagons are uncoupled, wagons
    /// rolling back), optionally ending with a wagon left standing on the rail; the record must
    /// be what a simple model predicts: wagons in order, numbers or `wagon_number_unread`,
    /// weights, the total, and the shunting flags where they happened.
    #[test]
    fn a_train_record_is_what_the_model_predicts(
        ops in prop::collection::vec(rail_op(), 1..12),
        left_standing in prop::option::of((200u32..1800).prop_map(|kg| kg * 50)),
    ) {
        let mut c = TrainCorrelator::new("P", "R1", rules());
        let mut model: Vec<ModelWagon> = Vec::new();
        // The physical wagon last over the rail: its number, how it shows, weight, containers.
        let mut last: Option<(String, NumberShows, u32, Vec<String>)> = None;
        let (mut now, mut gap, mut wagons_made, mut containers_made) = (0i64, 0i64, 0usize, 0usize);
        let pass = |c: &mut TrainCorrelator, at: i64, number: &str, shows: NumberShows, kg: u32, boxes: &[String], leaves: bool| {
            c.handle_wagon_on(t(at));
            c.handle_wagon_weight(t(at + 1000), weighing(f64::from(kg), t(at + 1000)));
            let read = shown(number, shows);
            let mut first: Vec<&str> = read.iter().map(String::as_str).collect();
            first.extend(boxes.iter().map(String::as_str));
            if !first.is_empty() {
                c.handle_reads(t(at + 1500), frame(&first));
            }
            if let Some(r) = &read {
                c.handle_reads(t(at + 2500), frame(&[r]));
            }
            if leaves {
                c.handle_wagon_off(t(at + 4000));
            }
        };
        for op in &ops {
            match op {
                RailOp::Wagon { shows, kg, containers } => {
                    wagons_made += 1;
                    let number = uic(&format!("3180{:07}", 1_000_003 * wagons_made % 10_000_000));
                    prop_assert!(
                        *shows != NumberShows::FailingCheck || shown(&number, *shows).is_some(),
                        "{} has a misread that no repair saves", number
                    );
                    let boxes: Vec<String> = (0..*containers).map(|_| {
                        containers_made += 1;
                        container_code(containers_made)
                    }).collect();
                    let at = if model.is_empty() { now } else { now + gap.max(1000) };
                    pass(&mut c, at, &number, *shows, *kg, &boxes, true);
                    let mut flags = Vec::new();
                    if *shows != NumberShows::Readable {
                        flags.push("wagon_number_unread");
                    }
                    if gap > 5000 && !model.is_empty() {
                        if let Some(prev) = model.last_mut() {
                            prev.flags.push("train_stood");
                        }
                    }
                    model.push(ModelWagon {
                        number: (*shows == NumberShows::Readable).then(|| number.clone()),
                        kg: f64::from(*kg),
                        containers: boxes.clone(),
                        flags,
                    });
                    last = Some((number, *shows, *kg, boxes));
                    now = at + 4000;
                    gap = 1000;
                }
                RailOp::Stand => gap = 7000,
                RailOp::RollBack => {
                    let Some((number, shows, kg, boxes)) = last.clone() else { continue };
                    let at = now + gap.max(1000);
                    pass(&mut c, at, &number, shows, kg, &boxes, true);
                    if shows == NumberShows::Readable {
                        // One wagon, weighed again: the stand (if any) was inside it.
                        if let Some(w) = model.last_mut() {
                            if !w.flags.contains(&"wagon_rolled_back") {
                                w.flags.push("wagon_rolled_back");
                            }
                        }
                    } else {
                        // Nothing shows it is the same wagon: the weighbridge saw one more.
                        if gap > 5000 {
                            if let Some(prev) = model.last_mut() {
                                prev.flags.push("train_stood");
                            }
                        }
                        model.push(ModelWagon {
                            number: None,
                            kg: f64::from(kg),
                            containers: Vec::new(),
                            flags: vec!["wagon_number_unread"],
                        });
                    }
                    now = at + 4000;
                    gap = 1000;
                }
            }
        }
        let end = match left_standing {
            Some(kg) => {
                let number = uic("33802933459");
                let at = if model.is_empty() { now } else { now + gap.max(1000) };
                pass(&mut c, at, &number, NumberShows::Readable, kg, &[], false);
                if gap > 5000 && !model.is_empty() {
                    if let Some(prev) = model.last_mut() {
                        prev.flags.push("train_stood");
                    }
                }
                model.push(ModelWagon {
                    number: Some(number),
                    kg: f64::from(kg),
                    containers: Vec::new(),
                    flags: vec!["wagon_left_on_rail"],
                });
                at + 30 * 60_000
            }
            None => now + 10_000,
        };
        if model.is_empty() {
            prop_assert!(c.poll(t(end + 60_000)).is_none(), "no wagon, no train");
            return Ok(());
        }
        let record = c.poll(t(end));
        prop_assert!(c.poll(t(end + 60_000)).is_none(), "one record per train");
        let record = record.ok_or_else(|| TestCaseError::fail("no record"))?;
        let wagons = record.train.clone().map(|t| t.wagons).unwrap_or_default();
        let mut seen: Vec<ModelWagon> = wagons
            .iter()
            .map(|w| ModelWagon {
                number: w.number.as_ref().map(|n| n.text.clone()),
                kg: w.weight.as_ref().map_or(-1.0, |w| w.gross_kg),
                containers: w.containers.iter().map(|c| c.text.clone()).collect(),
                flags: Vec::new(),
            })
            .collect();
        for f in &record.flags {
            let at = position_named(&f.reason).and_then(|p| p.checked_sub(1));
            match at.and_then(|i| seen.get_mut(i)) {
                Some(w) => w.flags.push(match f.code.as_str() {
                    "wagon_number_unread" => "wagon_number_unread",
                    "train_stood" => "train_stood",
                    "wagon_rolled_back" => "wagon_rolled_back",
                    "wagon_left_on_rail" => "wagon_left_on_rail",
                    _ => "unexpected flag",
                }),
                None => prop_assert!(false, "a flag on no wagon: {:?}", f),
            }
        }
        for w in seen.iter_mut().chain(model.iter_mut()) {
            w.flags.sort_unstable();
        }
        prop_assert_eq!(&seen, &model, "flags: {:?}", record.flags);
        let total: f64 = model.iter().map(|w| w.kg).sum();
        prop_assert_eq!(record.weight.map(|w| w.gross_kg), Some(total));
    }
}
