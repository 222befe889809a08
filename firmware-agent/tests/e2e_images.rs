//! 4 vehicles through sim (scanner on a drop folder) -> bcp-agent -> embedded rumqttd ->
//! central, checking the images central received for each crossing: a plate crop and an
//! overview from the winning frame, and a thumbnail of the scan image the drop folder listed.
mod common;

use anyhow::{bail, Context, Result};
use bcp_record::{Crossing, ImageKind, ImageRef};
use bcp_sim::ScannerDevice;
use bcp_sync::central::StoredCrossing;
use opencv::core::Mat;
use opencv::prelude::*;
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_crossing_reaches_central_with_its_plate_crop_overview_and_scan_thumbnail(
) -> Result<()> {
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    common::run_scenario_with(
        port,
        broker.v5_addr().port(),
        4,
        17,
        ScannerDevice::DropFolder,
        Some(check_images),
    )
    .await
}

/// Every crossing has exactly one image of each kind, all at central with matching hashes,
/// decoding as JPEGs of plausible sizes. `Ok(false)` while an image has not arrived yet.
fn check_images(stored: &[StoredCrossing], blobs: &Path) -> Result<bool> {
    if stored.is_empty() {
        return Ok(false);
    }
    for s in stored {
        let c = &s.crossing;
        let what = format!(
            "crossing #{} ({:?})",
            s.seq,
            c.plate.as_ref().map(|p| &p.text)
        );
        let one = |kind: ImageKind| -> Result<&ImageRef> {
            let mut of_kind = c.images.iter().filter(|i| i.kind == kind);
            match (of_kind.next(), of_kind.next()) {
                (Some(i), None) => Ok(i),
                _ => bail!(
                    "{what}: want one {} image, have {:?}",
                    kind.as_str(),
                    c.images
                ),
            }
        };
        let crop = one(ImageKind::PlateCrop)?;
        let overview = one(ImageKind::Overview)?;
        let thumb = one(ImageKind::ScanThumbnail)?;
        let mut sizes = Vec::new();
        for image in [crop, overview, thumb] {
            match decoded(c, image, blobs)? {
                Some(size) => sizes.push(size),
                None => return Ok(false),
            }
        }
        let [(cw, ch), (ow, oh), (tw, th)] = sizes[..] else {
            bail!("{what}: three sizes");
        };
        // The simulator's frames are 960x540, under the 1280 px overview bound: kept whole.
        if (ow, oh) != (960, 540) {
            bail!("{what}: overview {ow}x{oh}, want the frame's 960x540");
        }
        if !(60..ow / 2).contains(&cw) || !(20..oh / 2).contains(&ch) || cw <= ch {
            bail!("{what}: plate crop {cw}x{ch}: not a plate-shaped part of the {ow}x{oh} frame");
        }
        if crop.bytes >= overview.bytes {
            bail!(
                "{what}: the crop ({} B) is not smaller than the overview ({} B)",
                crop.bytes,
                overview.bytes
            );
        }
        // The simulated scan image is 1600x640: longest side down to 1024.
        if (tw, th) != (1024, 410) {
            bail!("{what}: scan thumbnail {tw}x{th}, want 1024x410");
        }
    }
    Ok(true)
}

/// The image's size once central holds its bytes (`None` until then), after checking the
/// bytes against the reference.
fn decoded(c: &Crossing, image: &ImageRef, blobs: &Path) -> Result<Option<(i32, i32)>> {
    let path = bcp_sync::blobs::BlobDir::new(blobs).path_of(&image.sha256);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let what = format!("crossing {} {} image", c.id, image.kind.as_str());
    if bcp_sync::blobs::sha256_hex(&bytes) != image.sha256 || bytes.len() as u64 != image.bytes {
        bail!("{what}: central's bytes do not match the reference {image:?}");
    }
    if image.media_type != "image/jpeg" || !bytes.starts_with(&[0xFF, 0xD8]) {
        bail!("{what}: not a JPEG ({})", image.media_type);
    }
    let buf = Mat::from_slice(&bytes).context("wrapping")?;
    let m = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR)
        .with_context(|| format!("{what}: decoding"))?;
    if m.empty() {
        bail!("{what}: does not decode");
    }
    Ok(Some((m.cols(), m.rows())))
}
