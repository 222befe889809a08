//! Bench: read rate and time per frame on camera frames rendered by `bcp_sim::plate_render`.
//!
//! `cargo bench -p bcp-anpr --bench rendered_frames [-- FRAMES]` (default 200 frames: 10
//! variants of 20 plates across TJ/UZ/KZ). Prints exact-match rate and median / p90 ms per frame
//! (decode + detection + recognition + formats; rendering excluded).
use bcp_anpr::{AnprConfig, PlateReader};
use bcp_sim::plate_render::render_vehicle_frame;
use bcp_sim::scenario;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let frames: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let vehicles = scenario::generate(20, 42);
    let mut reader = PlateReader::new(&AnprConfig::from_env())?;
    let (mut exact, mut ms) = (0usize, Vec::with_capacity(frames));
    for i in 0..frames {
        let v = &vehicles[i % vehicles.len()];
        let jpeg = render_vehicle_frame(&v.plate_display, 1000 + i as u64)?;
        let started = Instant::now();
        let reads = reader.read_image_bytes(&jpeg)?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
        if reads.first().is_some_and(|r| r.text == v.plate) {
            exact += 1;
        } else {
            let got: Vec<String> = reads
                .iter()
                .take(3)
                .map(|r| {
                    format!(
                        "{}[{}:{:.2}]",
                        r.text,
                        r.format.unwrap_or("-"),
                        r.confidence
                    )
                })
                .collect();
            println!(
                "  miss frame {i} (variant {}): want {} got {got:?}",
                1000 + i,
                v.plate
            );
        }
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "rendered frames: {frames}, exact {exact} ({:.1} %), median {:.1} ms, p90 {:.1} ms per frame",
        100.0 * exact as f64 / frames as f64,
        pct(0.5),
        pct(0.9)
    );
    Ok(())
}
