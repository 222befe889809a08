//! The evidence of a vote, read again: the plate crop cut from the best frame reads as the
//! voted plate, the overview still shows it.

mod common;

use anyhow::{ensure, Context, Result};
use bcp_anpr::evidence::{plate_images_from_jpegs, EvidenceConfig};
use bcp_anpr::vote;
use bcp_sim::plate_render::render_vehicle_frame;

#[test]
fn the_plate_crop_of_a_vote_reads_as_the_voted_plate() -> Result<()> {
    let mut reader = common::reader();
    for (printed, text) in [("1234 AB 01", "1234AB01"), ("01 A 123 BC", "01A123BC")] {
        let frames: Vec<Vec<u8>> = (0..3)
            .map(|i| render_vehicle_frame(printed, i))
            .collect::<Result<_>>()?;
        // One read per frame (the best), so frames[i] is read i's frame.
        let mut reads = Vec::new();
        for f in &frames {
            reads.push(
                reader
                    .read_image_bytes(f)?
                    .into_iter()
                    .next()
                    .context("a read")?,
            );
        }
        let voted = vote(&reads).context("a vote")?;
        ensure!(voted.text == text, "voted {voted:?}");

        let images = plate_images_from_jpegs(&frames, &voted, &EvidenceConfig::default())?;
        let crop = reader.read_image_bytes(&images.plate_crop)?;
        let best = crop.first().map(|c| c.text.as_str());
        ensure!(
            best == Some(text),
            "the crop {:?} reads {best:?}",
            images.crop
        );
        let [_, _, w, h] = images.crop;
        ensure!(
            w < 500 && h < 200,
            "a crop, not the frame: {:?}",
            images.crop
        );
        let overview = reader.read_image_bytes(&images.overview)?;
        let best = overview.first().map(|c| c.text.as_str());
        ensure!(best == Some(text), "the overview reads {best:?}");
    }
    Ok(())
}
