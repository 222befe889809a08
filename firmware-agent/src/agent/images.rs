//! The images recorded with each crossing (`[evidence]`): the plate crop and the overview cut
//! from the frame of the winning plate read (kept in the [`FrameCache`] until then), and a
//! reduced JPEG of each scan image a drop-folder scanner lists.
//!
//! An image never costs a record: a frame evicted from the cache, a frame or scan image that
//! does not decode, a scan image missing, too large or not a plain file, all leave the crossing
//! recorded without that image, flagged `plate_images_missing` or `scan_thumbnail_missing` with
//! the reason, logged at WARN and counted ([`ImageCounters`], logged at shutdown). Decoding and
//! encoding run in a vision worker of their own ([`crate::vision`], started with the first
//! crossing that has images and kept; a crashed one is started again with the next), called
//! from tokio's blocking pool, off the main loop's thread.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use bcp_anpr_core::worker::{Reply, Request};
use bcp_anpr_core::EvidenceConfig;
use bcp_record::{Crossing, Flag, ImageKind};

use crate::config::{AgentConfig, EvidenceSettings};
use crate::frames::FrameCache;
use crate::lane::{FrameId, LaneRecord};
use crate::vision::{self, VisionWorker};

/// At most this many thumbnails are made for one scan (a scan XML may list up to 64 images;
/// the rest stay in the scanner's folder).
pub(crate) const MAX_SCAN_THUMBNAILS: usize = 8;

/// The images of one crossing, ready for `Outbox::append_with_images`.
#[derive(Debug, Default)]
pub(super) struct MadeImages {
    pub(super) images: Vec<(ImageKind, Vec<u8>)>,
    /// Time spent decoding and encoding (0 when nothing was made).
    pub(super) ms: u64,
}

/// How often images were made or missed since the start (the status report's and the
/// metrics' figures).
pub(super) use crate::control::protocol::ImageCounts as ImageCounters;

/// The frame cache and what the images are made with.
#[derive(Debug)]
pub(super) struct EvidenceImages {
    settings: EvidenceSettings,
    /// The drop-folder scanner's folder (a feed scanner's image names name nothing here).
    scan_folder: Option<PathBuf>,
    frames: FrameCache,
    pub(super) counters: ImageCounters,
    /// The images' vision worker, once a crossing needed it.
    worker: Arc<Mutex<Option<VisionWorker>>>,
}

/// Work for the blocking pool: everything owned.
struct Job {
    worker: Arc<Mutex<Option<VisionWorker>>>,
    cfg: EvidenceConfig,
    plate: Option<(Vec<u8>, [i32; 4])>,
    scans: Vec<PathBuf>,
    scan_max_bytes: u64,
    scan_max_side: u32,
}

/// What the blocking pool made, and why what is missing is missing.
#[derive(Default)]
struct JobOutput {
    images: Vec<(ImageKind, Vec<u8>)>,
    plate_error: Option<String>,
    scan_errors: Vec<String>,
    scan_made: u64,
}

impl EvidenceImages {
    pub(super) fn new(cfg: &AgentConfig) -> Self {
        let e = &cfg.evidence;
        Self {
            settings: e.clone(),
            scan_folder: scan_folder(cfg),
            frames: FrameCache::new(e.frame_cache_frames, e.frame_cache_bytes()),
            counters: ImageCounters::default(),
            worker: Arc::default(),
        }
    }

    /// Takes `[evidence]` and the scanner's folder from a (reloaded) config.
    pub(super) fn reconfigure(&mut self, cfg: &AgentConfig) {
        self.settings = cfg.evidence.clone();
        self.scan_folder = scan_folder(cfg);
        self.frames.set_limits(
            self.settings.frame_cache_frames,
            self.settings.frame_cache_bytes(),
        );
    }

    /// Keeps a frame's JPEG (when images are on and the frame has a plate-like read).
    pub(super) fn keep_frame(&mut self, jpeg: Option<Vec<u8>>) -> Option<FrameId> {
        match jpeg {
            Some(bytes) if self.settings.enabled => Some(self.frames.insert(bytes)),
            _ => None,
        }
    }

    /// The images of `record`; what cannot be made is flagged on its crossing with the reason.
    pub(super) async fn make(&mut self, record: &mut LaneRecord) -> MadeImages {
        if !self.settings.enabled {
            return MadeImages::default();
        }
        let c = &mut record.crossing;
        let mut plate = None;
        if c.plate.is_some() {
            match self.plate_frame(record.plate_frame.as_ref()) {
                Ok(found) => plate = Some(found),
                Err(reason) => self.plate_missing(c, reason),
            }
        }
        let mut scans = Vec::new();
        if let (Some(scan), Some(folder)) = (&c.scan, &self.scan_folder) {
            for name in scan.images.iter().take(MAX_SCAN_THUMBNAILS) {
                scans.push(folder.join(name));
            }
            if scan.images.len() > MAX_SCAN_THUMBNAILS {
                tracing::info!(scan = %scan.scan_id, images = scan.images.len(), "thumbnails made of the first {MAX_SCAN_THUMBNAILS} scan images only");
            }
        }
        if plate.is_none() && scans.is_empty() {
            return MadeImages::default();
        }
        let job = Job {
            worker: self.worker.clone(),
            cfg: self.settings.images(),
            plate,
            scans,
            scan_max_bytes: self.settings.scan_image_max_mib.saturating_mul(1024 * 1024),
            scan_max_side: self.settings.scan_thumbnail_max_side_px,
        };
        let had_plate = job.plate.is_some();
        let started = Instant::now();
        let out = match tokio::task::spawn_blocking(move || job.run()).await {
            Ok(out) => out,
            Err(e) => JobOutput {
                plate_error: had_plate.then(|| format!("the image task failed: {e}")),
                scan_errors: vec![format!("the image task failed: {e}")],
                ..JobOutput::default()
            },
        };
        let ms = started.elapsed().as_millis() as u64;
        if had_plate {
            match out.plate_error {
                Some(reason) => self.plate_missing(c, reason),
                None => self.counters.plate_images += 1,
            }
        }
        self.counters.scan_thumbnails += out.scan_made;
        if !out.scan_errors.is_empty() {
            self.counters.scan_thumbnails_missing += out.scan_errors.len() as u64;
            let reason = out.scan_errors.join("; ");
            tracing::warn!(crossing = %c.id, %reason, "scan thumbnail not recorded; the crossing is recorded without it");
            c.flags.push(Flag::new("scan_thumbnail_missing", reason));
        }
        MadeImages {
            images: out.images,
            ms,
        }
    }

    /// The winning read's frame bytes and plate box, or why there are none.
    fn plate_frame(
        &mut self,
        plate_frame: Option<&crate::lane::PlateFrame>,
    ) -> Result<(Vec<u8>, [i32; 4]), String> {
        let pf = plate_frame.ok_or("the lane named no frame for the winning read")?;
        let id = pf
            .frame
            .ok_or("the frame of the winning read was not kept (images were off when it came)")?;
        let (max_frames, max_bytes) = self.frames.limits();
        match self.frames.take(id) {
            Some(bytes) => Ok((bytes, pf.bbox)),
            None => Err(format!(
                "the frame of the winning read ({}) was evicted from the frame cache ({max_frames} frames, {} MiB; evidence.frame_cache_*) before the crossing closed",
                pf.text,
                max_bytes / (1024 * 1024)
            )),
        }
    }

    fn plate_missing(&mut self, c: &mut Crossing, reason: String) {
        self.counters.plate_images_missing += 1;
        tracing::warn!(crossing = %c.id, %reason, "plate images not recorded; the crossing is recorded without them");
        c.flags.push(Flag::new("plate_images_missing", reason));
    }

    /// How often images were made or missed since the start.
    pub(super) fn counters(&self) -> ImageCounters {
        self.counters
    }

    /// Logs the counters (at shutdown).
    pub(super) fn log_counters(&self) {
        let n = self.counters;
        tracing::info!(
            plate_images = n.plate_images,
            plate_images_missing = n.plate_images_missing,
            scan_thumbnails = n.scan_thumbnails,
            scan_thumbnails_missing = n.scan_thumbnails_missing,
            frames_evicted = self.frames.evicted(),
            frames_kept = self.frames.len(),
            "evidence images since start"
        );
    }
}

impl Job {
    fn run(self) -> JobOutput {
        let mut out = JobOutput::default();
        // One job at a time uses the worker; a job that panicked while holding it left nothing
        // half-done that matters (the worker answers each request whole).
        let mut worker = self.worker.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((jpeg, bbox)) = &self.plate {
            let request = Request::PlateImages {
                bbox: *bbox,
                cfg: Box::new(self.cfg.clone()),
            };
            match ask(&mut worker, &request, jpeg) {
                Ok((Reply::PlateImages { .. }, made)) if made.len() == 2 => {
                    let mut made = made.into_iter();
                    if let (Some(crop), Some(overview)) = (made.next(), made.next()) {
                        out.images.push((ImageKind::PlateCrop, crop));
                        out.images.push((ImageKind::Overview, overview));
                    }
                }
                Ok((other, _)) => {
                    out.plate_error = Some(format!(
                        "cutting the plate images: the vision worker answered {other:?}"
                    ));
                }
                Err(e) => out.plate_error = Some(format!("cutting the plate images: {e:#}")),
            }
        }
        for path in &self.scans {
            let made = read_scan_image(path, self.scan_max_bytes).and_then(|bytes| {
                let request = Request::Thumbnail {
                    max_side: self.scan_max_side,
                    cfg: Box::new(self.cfg.clone()),
                };
                let thumbnail = match ask(&mut worker, &request, &bytes) {
                    Ok((Reply::Thumbnail, mut made)) if made.len() == 1 => {
                        made.pop().context("a thumbnail")
                    }
                    Ok((other, _)) => Err(anyhow::anyhow!("the vision worker answered {other:?}")),
                    Err(e) => Err(e),
                };
                thumbnail.with_context(|| format!("making a thumbnail of {}", path.display()))
            });
            match made {
                Ok(jpeg) => {
                    out.images.push((ImageKind::ScanThumbnail, jpeg));
                    out.scan_made += 1;
                }
                Err(e) => out.scan_errors.push(format!("{e:#}")),
            }
        }
        out
    }
}

/// Asks the images' worker (started if there is none) one request about `image`; a worker
/// that crashed is dropped, and the next request starts another.
fn ask(
    worker: &mut Option<VisionWorker>,
    request: &Request,
    image: &[u8],
) -> Result<(Reply, Vec<Vec<u8>>)> {
    if worker.is_none() {
        *worker = Some(VisionWorker::start("images")?);
    }
    Ok(vision::ask_in(worker, request, &[image])?)
}

/// The drop-folder scanner's folder, where its scan images are.
fn scan_folder(cfg: &AgentConfig) -> Option<PathBuf> {
    cfg.scanner.as_ref().and_then(|s| s.drop_folder.clone())
}

/// A scan image's bytes: a regular file (not a link) directly in its folder, at most `max`
/// bytes (checked before reading, and the read bounded in case it grows).
pub(crate) fn read_scan_image(path: &Path, max: u64) -> Result<Vec<u8>> {
    // The parser refused names that leave the folder; this checks again where it matters.
    let plain = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| !n.starts_with('.') && path.parent().is_some());
    if !plain {
        bail!("{}: not a plain file name", path.display());
    }
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("scan image {}", path.display()))?;
    if !meta.file_type().is_file() {
        bail!(
            "scan image {}: not a regular file (links are not followed)",
            path.display()
        );
    }
    if meta.len() > max {
        bail!(
            "scan image {} is {} bytes, over evidence.scan_image_max_mib ({max} bytes)",
            path.display(),
            meta.len()
        );
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!(
            "scan image {} grew over evidence.scan_image_max_mib ({max} bytes) while read",
            path.display()
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_images_are_read_within_limits_never_through_links() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let ok = dir.path().join("XR1-1.png");
        std::fs::write(&ok, vec![7u8; 100])?;
        assert_eq!(read_scan_image(&ok, 100)?.len(), 100);
        let e = read_scan_image(&ok, 99).expect_err("too large");
        assert!(format!("{e:#}").contains("scan_image_max_mib"), "{e:#}");
        let e = read_scan_image(&dir.path().join("gone.png"), 100).expect_err("missing");
        assert!(format!("{e:#}").contains("gone.png"), "{e:#}");
        let link = dir.path().join("link.png");
        std::os::unix::fs::symlink("/etc/passwd", &link)?;
        let e = read_scan_image(&link, 1 << 20).expect_err("a link");
        assert!(format!("{e:#}").contains("not a regular file"), "{e:#}");
        std::fs::create_dir(dir.path().join("sub.png"))?;
        assert!(read_scan_image(&dir.path().join("sub.png"), 100).is_err());
        Ok(())
    }
}
