//! Scenarios: the vehicles a simulated post sees, generated deterministically from a seed.
//!
//! A scenario is what the end-to-end test compares central's records against, so it holds the
//! ground truth for every piece of evidence: plate, gross weight, dimensions and scan; on an
//! axle scale ([`on_axle_scale`]), the weight of each axle group too.

use bcp_record::{Dimensions, ScanDecision};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The weighbridge's scale division: the simulated indicator shows multiples of 20 kg.
pub const DIVISION_KG: u32 = 20;

/// One simulated vehicle and the truth about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vehicle {
    /// As printed on the plate (`1234 AB 01`).
    pub plate_display: String,
    /// Normalised, as a reader should return it (`1234AB01`).
    pub plate: String,
    /// The plate's country code (`TJ`, `UZ`, `KZ`).
    pub country: String,
    /// A multiple of [`DIVISION_KG`].
    pub gross_kg: u32,
    pub dimensions: Dimensions,
    pub scanner_id: String,
    pub scan_id: String,
    pub decision: ScanDecision,
    /// On an axle scale: each axle group's weight, in the order they cross, multiples of
    /// [`DIVISION_KG`] that sum to `gross_kg`. Empty on a whole-vehicle weighbridge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub axles_kg: Vec<u32>,
}

/// Letters that Tajik, Kazakh and Uzbek plates share with Latin and that the simulator prints.
const LETTERS: &[u8] = b"ABCEHKMOPTXY";

/// `n` vehicles, the same for the same seed; plates cycle through Tajik, Uzbek and Kazakh formats.
pub fn generate(n: usize, seed: u64) -> Vec<Vehicle> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let v = vehicle(&mut rng, out.len(), seed);
        // Plates are unique within a scenario, so that a test can match records by plate.
        if seen.insert(v.plate.clone()) {
            out.push(v);
        }
    }
    out
}

fn vehicle(rng: &mut StdRng, i: usize, seed: u64) -> Vehicle {
    let (country, plate_display) = match i % 3 {
        // Tajikistan: dddd LL dd, region 01-08.
        0 => (
            "TJ",
            format!(
                "{:04} {}{} {:02}",
                rng.random_range(1..10_000),
                letter(rng),
                letter(rng),
                rng.random_range(1..=8)
            ),
        ),
        // Uzbekistan: dd L ddd LL.
        1 => {
            let regions = [1, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95];
            let region = regions[rng.random_range(0..regions.len())];
            (
                "UZ",
                format!(
                    "{region:02} {} {:03} {}{}",
                    letter(rng),
                    rng.random_range(1..1000),
                    letter(rng),
                    letter(rng)
                ),
            )
        }
        // Kazakhstan: ddd LLL dd, area 01-20.
        _ => (
            "KZ",
            format!(
                "{:03} {}{}{} {:02}",
                rng.random_range(1..1000),
                letter(rng),
                letter(rng),
                letter(rng),
                rng.random_range(1..=20)
            ),
        ),
    };
    let plate = plate_display
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let decision = if rng.random_range(0..10) == 0 {
        ScanDecision::Alarm
    } else {
        ScanDecision::NoAlarm
    };
    Vehicle {
        plate_display,
        plate,
        country: country.to_owned(),
        gross_kg: rng.random_range(400..2_200) * DIVISION_KG,
        dimensions: Dimensions {
            length_mm: rng.random_range(6_000..16_500),
            width_mm: rng.random_range(2_300..2_550),
            height_mm: rng.random_range(2_800..4_000),
        },
        scanner_id: "XR-1".to_owned(),
        scan_id: format!("XR1-{seed:04}-{:06}", i + 1),
        decision,
        axles_kg: Vec::new(),
    }
}

/// The vehicles as an axle scale weighs them: each one's gross split into axle groups (2 under
/// 16 t, 3 under 24 t, 4 under 32 t, else 5), each about the same (0.8 to 1.2 times the mean),
/// in multiples of [`DIVISION_KG`] summing to the gross. The same for the same seed; a
/// vehicle that already has its axles keeps them.
pub fn on_axle_scale(vehicles: Vec<Vehicle>, seed: u64) -> Vec<Vehicle> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xA71E_5CA1E);
    vehicles
        .into_iter()
        .map(|mut v| {
            if v.axles_kg.is_empty() {
                v.axles_kg = split_into_axles(&mut rng, v.gross_kg);
            }
            v
        })
        .collect()
}

fn split_into_axles(rng: &mut StdRng, gross_kg: u32) -> Vec<u32> {
    let groups = match gross_kg {
        ..16_000 => 2,
        16_000..24_000 => 3,
        24_000..32_000 => 4,
        _ => 5,
    };
    let shares: Vec<u32> = (0..groups).map(|_| rng.random_range(8..=12)).collect();
    let total: u32 = shares.iter().sum();
    let mut axles: Vec<u32> = shares[..groups - 1]
        .iter()
        .map(|s| gross_kg / total * s / DIVISION_KG * DIVISION_KG)
        .collect();
    axles.push(gross_kg - axles.iter().sum::<u32>());
    axles
}

fn letter(rng: &mut StdRng) -> char {
    char::from(LETTERS[rng.random_range(0..LETTERS.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_scenario_and_unique_plates() {
        let a = generate(30, 7);
        assert_eq!(a, generate(30, 7));
        assert_ne!(a, generate(30, 8));
        let mut plates: Vec<_> = a.iter().map(|v| v.plate.clone()).collect();
        plates.sort();
        plates.dedup();
        assert_eq!(plates.len(), 30, "plates must be unique within a scenario");
        assert!(a.iter().all(|v| v.gross_kg % DIVISION_KG == 0));
        assert_eq!(a[0].country, "TJ");
        assert_eq!(a[0].plate.len(), 8);
        assert_eq!(a[1].country, "UZ");
        assert_eq!(a[2].country, "KZ");
    }

    #[test]
    fn axle_groups_sum_to_the_gross_in_divisions() {
        let a = on_axle_scale(generate(40, 7), 7);
        assert_eq!(a, on_axle_scale(generate(40, 7), 7), "deterministic");
        assert_eq!(
            on_axle_scale(a.clone(), 99),
            a,
            "axles already set are kept"
        );
        for v in &a {
            assert!((2..=5).contains(&v.axles_kg.len()), "{v:?}");
            assert_eq!(v.axles_kg.iter().sum::<u32>(), v.gross_kg, "{v:?}");
            assert!(
                v.axles_kg
                    .iter()
                    .all(|kg| kg % DIVISION_KG == 0 && *kg >= 2_000),
                "{v:?}"
            );
        }
        let counts: std::collections::BTreeSet<usize> =
            a.iter().map(|v| v.axles_kg.len()).collect();
        assert!(counts.len() >= 3, "a mix of classes: {counts:?}");
    }
}
