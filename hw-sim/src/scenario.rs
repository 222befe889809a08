//! Scenarios: the vehicles a simulated post sees, generated deterministically from a seed.
//!
//! A scenario is what the end-to-end test compares central's records against, so it holds the
//! ground truth for every piece of evidence: plate, gross weight, dimensions and scan.

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
    /// The trailer's plate as printed (a Russian trailer's `AB 1234 77`), for a tractor and
    /// trailer; `None`: a rigid truck, plated at both ends with [`Vehicle::plate_display`].
    /// A rear camera ([`crate::PostDevices::rear_camera`]) sees the one or the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailer_plate_display: Option<String>,
    /// Normalised, as a reader should return it (`AB123477`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailer_plate: Option<String>,
    /// It drives on, stops, and backs off the way it came (no scan): not a crossing. Only a
    /// post with presence sensors ([`crate::PostDevices::presence`]) can tell; generated
    /// scenarios have none, a test sets it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverses: bool,
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
        trailer_plate_display: None,
        trailer_plate: None,
        reverses: false,
    }
    .with_trailer(i, seed)
}

/// Letters of Russian plates (the Cyrillic letters that look Latin).
const RU_LETTERS: &[u8] = b"ABEKMHOPCTYX";

impl Vehicle {
    /// Every second vehicle (the 2nd, 4th, ..) pulls a trailer with a Russian trailer plate
    /// (`LL dddd dd`), drawn from its own generator so that the rest of the scenario is the
    /// same as before trailers.
    fn with_trailer(mut self, i: usize, seed: u64) -> Self {
        if i % 2 == 1 {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x7472_6169_6c65_7200 ^ i as u64);
            let mut l = || char::from(RU_LETTERS[rng.random_range(0..RU_LETTERS.len())]);
            let (a, b) = (l(), l());
            let display = format!(
                "{a}{b} {:04} {:02}",
                rng.random_range(1..10_000),
                rng.random_range(1..100)
            );
            self.trailer_plate = Some(
                display
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect(),
            );
            self.trailer_plate_display = Some(display);
        }
        self
    }
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
        // Every second vehicle pulls a trailer with a Russian trailer plate.
        assert!(a[0].trailer_plate.is_none() && a[2].trailer_plate.is_none());
        let trailer = a[1].trailer_plate.as_deref().expect("a trailer");
        let c: Vec<char> = trailer.chars().collect();
        assert_eq!(c.len(), 8, "{trailer}: LL dddd dd");
        assert!(
            c[..2].iter().all(|x| RU_LETTERS.contains(&(*x as u8))),
            "{trailer}"
        );
        assert!(c[2..].iter().all(char::is_ascii_digit), "{trailer}");
        assert_eq!(
            a[1].trailer_plate_display.as_deref().map(str::len),
            Some(10)
        );
    }
}
