//! Scenarios of the other post types, deterministic from a seed like [`crate::scenario`]:
//! trains for a rail post, cargo units (ULDs) for an air post, vessels for a river post.
//!
//! Each holds the ground truth a test compares the records against. Identifiers carry valid
//! check digits (computed here, independently of `bcp-anpr`, from the rules in the field notes),
//! and are rendered into the camera frames the agent reads:
//! - rail: one frame per wagon with its number, one per container with its ISO 6346 code;
//!   PP-OCRv4 reads both from the rendered frames. Trains mix the two numbering schemes of the
//!   region's border stations: every third wagon (the 2nd, 5th, ..) carries a CIS 8-digit
//!   number (7 digits + the Luhn digit, painted as one run as on a 1520 mm wagon: `52461282`),
//!   the others a UIC 12-digit one (`33 66 4956 123-4`). The reader reads the rendered 8-digit
//!   runs (`bcp-anpr`'s `read_rendered` test `cis_wagon_numbers_read_exactly`).
//! - river: ENI numbers, national (no check digit) or `9` + an IMO number (checked); read well.
//! - air: IATA ULD ids (`AKE 12345 LH`), painted on a placard on the unit's side
//!   ([`crate::plate_render::render_cargo_unit_frame`]: black capitals, a character height of
//!   margin, no country strip); read well by a reader that fits no plate formats (a plate
//!   grammar would take the owner code's last letter for a country code and drop it). The air
//!   post runs end to end in `firmware-agent/tests/post_types.rs`.
//!
//! Air and river conveyances are [`Vehicle`]s (the identifier in `plate_display`/`plate`,
//! the scheme in `country`), driven through the lane exactly like a road vehicle.

use crate::scenario::{Vehicle, DIVISION_KG};
use bcp_record::{Dimensions, ScanDecision};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A simulated train and the truth about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimTrain {
    pub wagons: Vec<SimWagon>,
    pub scanner_id: String,
    pub scan_id: String,
    pub decision: ScanDecision,
}

/// One wagon: its number as painted and normalised, its gross weight, its containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimWagon {
    /// `33 66 4956 123-4` (UIC) or `52461282` (CIS).
    pub number_display: String,
    /// `336649561234` or `52461282`.
    pub number: String,
    /// The numbering scheme, as the record names it: `UIC` or `CIS`.
    pub scheme: String,
    /// A multiple of [`DIVISION_KG`].
    pub gross_kg: u32,
    /// ISO 6346 codes, as painted (`CSQU 305438 3`) and normalised (`CSQU3054383`).
    pub containers: Vec<(String, String)>,
}

/// `n` trains of `wagons` wagons each, every third wagon (the 2nd, 5th, ..) with a CIS
/// number, the others with a UIC one; wagon numbers unique in the scenario.
pub fn generate_trains(n: usize, wagons: usize, seed: u64) -> Vec<SimTrain> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::new();
    (0..n)
        .map(|i| {
            let mut list = Vec::with_capacity(wagons);
            while list.len() < wagons {
                let w = if list.len() % 3 == 1 {
                    cis_wagon(&mut rng)
                } else {
                    wagon(&mut rng)
                };
                if seen.insert(w.number.clone()) {
                    list.push(w);
                }
            }
            SimTrain {
                wagons: list,
                scanner_id: "XR-R".to_owned(),
                scan_id: format!("XRR-{seed:04}-{:06}", i + 1),
                decision: ScanDecision::NoAlarm,
            }
        })
        .collect()
}

fn wagon(rng: &mut StdRng) -> SimWagon {
    // UIC: interoperability code, country (66 Tajikistan, 27 Kazakhstan, 29 Uzbekistan), type
    // and serial; then the Luhn check digit.
    let countries = ["66", "27", "29"];
    let payload = format!(
        "{}{}{:07}",
        ["31", "33", "21"][rng.random_range(0..3)],
        countries[rng.random_range(0..countries.len())],
        rng.random_range(0..10_000_000)
    );
    let number = format!("{payload}{}", luhn(&payload));
    let number_display = format!(
        "{} {} {} {}-{}",
        &number[0..2],
        &number[2..4],
        &number[4..8],
        &number[8..11],
        &number[11..12]
    );
    let containers = (0..rng.random_range(0..=2))
        .map(|_| container(rng))
        .collect();
    SimWagon {
        number_display,
        number,
        scheme: "UIC".to_owned(),
        gross_kg: rng.random_range(1_100..4_600) * DIVISION_KG,
        containers,
    }
}

/// A wagon of the 1520 mm network with its CIS 8-digit number: a type digit (2 covered, 4
/// flat, 5 own-use, 6 gondola, 7 tank, 9 other), six digits, the Luhn check digit; painted as
/// one run of digits.
fn cis_wagon(rng: &mut StdRng) -> SimWagon {
    let payload = format!(
        "{}{:06}",
        ["2", "4", "5", "6", "7", "9"][rng.random_range(0..6)],
        rng.random_range(0..1_000_000)
    );
    let number = format!("{payload}{}", luhn(&payload));
    let containers = (0..rng.random_range(0..=2))
        .map(|_| container(rng))
        .collect();
    SimWagon {
        number_display: number.clone(),
        number,
        scheme: "CIS".to_owned(),
        gross_kg: rng.random_range(1_100..4_600) * DIVISION_KG,
        containers,
    }
}

fn container(rng: &mut StdRng) -> (String, String) {
    let owners = ["CSQ", "MSK", "TGH", "HLX", "CMA"];
    loop {
        let head = format!(
            "{}U{:06}",
            owners[rng.random_range(0..owners.len())],
            rng.random_range(0..1_000_000)
        );
        let sum: u32 = head
            .bytes()
            .enumerate()
            .map(|(i, b)| iso6346_value(b) << i)
            .sum();
        // A serial whose check would be 10 is not issued (ISO 6346 advises against it).
        if sum % 11 == 10 {
            continue;
        }
        let check = sum % 11;
        return (
            format!("{} {} {check}", &head[..4], &head[4..]),
            format!("{head}{check}"),
        );
    }
}

fn iso6346_value(b: u8) -> u32 {
    match b {
        b'0'..=b'9' => u32::from(b - b'0'),
        _ => {
            // A=10, then +1 per letter, skipping multiples of 11.
            let mut v = 10;
            for _ in b'A'..b {
                v += 1;
                if v % 11 == 0 {
                    v += 1;
                }
            }
            v
        }
    }
}

/// The Luhn check digit of a digit string (weights 2,1,.. from the right of the payload).
fn luhn(payload: &str) -> u32 {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            let v = if i % 2 == 0 { d * 2 } else { d };
            v / 10 + v % 10
        })
        .sum();
    (10 - sum % 10) % 10
}

/// The scheme (`Vehicle::country`) of the cargo units of [`generate_cargo_units`].
pub const ULD_SCHEME: &str = "ULD";

/// `n` cargo units for an air post: ULD id (`AKE 12345 LH`), weight on the cargo scale.
pub fn generate_cargo_units(n: usize, seed: u64) -> Vec<Vehicle> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (types, owners) = (["AKE", "PMC", "PAG", "AKN"], ["LH", "KE", "SU", "TK", "HY"]);
    unique(n, |i| {
        let display = format!(
            "{} {:05} {}",
            types[rng.random_range(0..types.len())],
            rng.random_range(1..100_000),
            owners[rng.random_range(0..owners.len())]
        );
        conveyance(
            display,
            ULD_SCHEME,
            rng.random_range(5..300) * DIVISION_KG,
            i,
            seed,
        )
    })
}

/// `n` vessels for a river post: ENI numbers, every other one `9` + an IMO number.
pub fn generate_vessels(n: usize, seed: u64) -> Vec<Vehicle> {
    let mut rng = StdRng::seed_from_u64(seed);
    unique(n, |i| {
        let display = if i % 2 == 0 {
            // A national ENI: authority 023 (the Netherlands) + serial; no check digit.
            format!("023{:05}", rng.random_range(0..100_000))
        } else {
            let imo: String = format!("9{:05}", rng.random_range(0..100_000));
            let sum: u32 = imo
                .bytes()
                .zip((2..=7).rev())
                .map(|(b, w)| u32::from(b - b'0') * w)
                .sum();
            format!("9{imo}{}", sum % 10)
        };
        conveyance(display, "ENI", 0, i, seed)
    })
}

fn unique(n: usize, mut make: impl FnMut(usize) -> Vehicle) -> Vec<Vehicle> {
    let mut out: Vec<Vehicle> = Vec::with_capacity(n);
    while out.len() < n {
        let v = make(out.len());
        if !out.iter().any(|o| o.plate == v.plate) {
            out.push(v);
        }
    }
    out
}

fn conveyance(display: String, scheme: &str, gross_kg: u32, i: usize, seed: u64) -> Vehicle {
    Vehicle {
        plate: display
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect(),
        plate_display: display,
        country: scheme.to_owned(),
        // A vessel's presence sensor still shows something on the simulated indicator.
        gross_kg: gross_kg.max(1_000),
        dimensions: Dimensions {
            length_mm: 1_534,
            width_mm: 1_562,
            height_mm: 1_630,
        },
        scanner_id: "XR-1".to_owned(),
        scan_id: format!("XR1-{seed:04}-{:06}", i + 1),
        decision: ScanDecision::NoAlarm,
        trailer_plate_display: None,
        trailer_plate: None,
        reverses: false,
        axles_kg: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_match_the_field_notes_examples() {
        assert_eq!(luhn("21812471217"), 3);
        assert_eq!(luhn("51800843001"), 0);
        // A CIS number: the same Luhn over 7 digits (2,1,.. from the left).
        assert_eq!(luhn("5246128"), 2);
        let sum: u32 = "CSQU305438"
            .bytes()
            .enumerate()
            .map(|(i, b)| iso6346_value(b) << i)
            .sum();
        assert_eq!(sum % 11 % 10, 3);
    }

    #[test]
    fn scenarios_are_deterministic_with_unique_identifiers() {
        let trains = generate_trains(2, 4, 7);
        assert_eq!(trains, generate_trains(2, 4, 7));
        let mut numbers: Vec<&str> = trains
            .iter()
            .flat_map(|t| t.wagons.iter().map(|w| w.number.as_str()))
            .collect();
        let schemes: Vec<&str> = trains[0].wagons.iter().map(|w| w.scheme.as_str()).collect();
        assert_eq!(
            schemes,
            ["UIC", "CIS", "UIC", "UIC"],
            "every third wagon a CIS one"
        );
        for w in trains.iter().flat_map(|t| &t.wagons) {
            let len = if w.scheme == "CIS" { 8 } else { 12 };
            assert_eq!(w.number.len(), len, "{w:?}");
            let (payload, check) = w.number.split_at(len - 1);
            assert_eq!(check, luhn(payload).to_string(), "{w:?}");
        }
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), 8);
        let w = &trains[0].wagons[0];
        assert_eq!(
            w.number_display
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>(),
            w.number
        );
        let vessels = generate_vessels(4, 7);
        assert!(vessels
            .iter()
            .all(|v| v.plate.len() == 8 && v.country == "ENI"));
        assert!(vessels[1].plate.starts_with('9'));
        let ulds = generate_cargo_units(3, 7);
        assert!(ulds.iter().all(|u| u.plate.len() == 10));
    }
}
