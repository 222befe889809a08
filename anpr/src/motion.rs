//! Camera motion: how much of a frame changed since the camera's previous frame.
//!
//! A lane camera that looks at the weighbridge can tell that a vehicle is there by what moves in
//! its picture. [`MotionMeter`] measures it, frame by frame, cheaply enough for every frame of a
//! stream (about 0.2 ms for a decoded 960x540 frame at the default size on the development
//! machine; about 0.7 ms from JPEG bytes with [`MotionMeter::measure_encoded`]'s reduced
//! decode):
//!
//! 1. the frame is made grey and scaled down to [`MotionConfig::width_px`] wide (its aspect
//!    kept), then blurred ([`MotionConfig::blur_px`]) so that sensor noise and JPEG artefacts
//!    do not count;
//! 2. each pixel of that small image that differs from the same pixel of the previous frame's
//!    by more than [`MotionConfig::pixel_threshold`] grey levels has changed;
//! 3. the frame's motion is the fraction of pixels that changed, `0.0 ..= 1.0`.
//!
//! The first frame, and a frame whose small image has another size than the previous one's (the
//! camera changed resolution), have no previous frame to compare with: their motion is 0.
//! An empty frame or one of a pixel type the meter does not handle (not 8-bit) is an
//! [`AnprError::UnsupportedFrame`], never a panic, and leaves the previous frame as it was.
//!
//! The small images are kept in the meter and reused, so a frame of the same size allocates
//! nothing after the first (OpenCV reuses a `Mat` of the right size and type).
//!
//! What the fractions mean for a vehicle (on, off) is decided elsewhere, by the agent's camera
//! presence rules; this module only measures.

use opencv::core::{Mat, Size, Vector, BORDER_DEFAULT, CV_8U};
use opencv::prelude::*;
use opencv::{core, imgcodecs, imgproc};

use crate::error::{AnprError, CvContext};

pub use bcp_anpr_core::settings::MotionConfig;

/// Measures the motion of one camera's frames, in the order they were taken (see the module
/// header). One per camera.
#[derive(Debug)]
pub struct MotionMeter {
    cfg: MotionConfig,
    grey: Mat,
    small: Mat,
    current: Mat,
    previous: Mat,
    has_previous: bool,
    diff: Mat,
    changed: Mat,
    decoded: Mat,
}

impl MotionMeter {
    /// A meter with no previous frame; an invalid `cfg` is an [`AnprError::Settings`].
    pub fn new(cfg: MotionConfig) -> Result<Self, AnprError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            grey: Mat::default(),
            small: Mat::default(),
            current: Mat::default(),
            previous: Mat::default(),
            has_previous: false,
            diff: Mat::default(),
            changed: Mat::default(),
            decoded: Mat::default(),
        })
    }

    /// Forgets the previous frame (after a gap in the frames): the next frame's motion is 0.
    pub fn reset(&mut self) {
        self.has_previous = false;
    }

    /// The fraction of `frame`'s pixels that changed since the previous frame (`0.0 ..= 1.0`);
    /// `frame` is BGR, BGRA or grey, 8-bit.
    pub fn measure(&mut self, frame: &Mat) -> Result<f64, AnprError> {
        if frame.empty() || frame.cols() < 1 || frame.rows() < 1 {
            return Err(AnprError::UnsupportedFrame(
                "an empty frame has no motion to measure".to_owned(),
            ));
        }
        if frame.depth() != CV_8U {
            return Err(AnprError::UnsupportedFrame(format!(
                "motion is measured on 8-bit frames; this one has depth {}",
                frame.depth()
            )));
        }
        let source = match frame.channels() {
            1 => frame,
            3 => {
                imgproc::cvt_color_def(frame, &mut self.grey, imgproc::COLOR_BGR2GRAY)
                    .cv("grey for motion")?;
                &self.grey
            }
            4 => {
                imgproc::cvt_color_def(frame, &mut self.grey, imgproc::COLOR_BGRA2GRAY)
                    .cv("grey for motion")?;
                &self.grey
            }
            n => {
                return Err(AnprError::UnsupportedFrame(format!(
                    "motion is measured on grey, BGR or BGRA frames; this one has {n} channels"
                )))
            }
        };
        let width = self.cfg.width_px;
        let height = ((i64::from(source.rows()) * i64::from(width)) / i64::from(source.cols()))
            .clamp(1, 4096) as i32;
        imgproc::resize(
            source,
            &mut self.small,
            Size::new(width, height),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )
        .cv("scaling down for motion")?;
        if self.cfg.blur_px > 1 {
            let k = self.cfg.blur_px;
            imgproc::gaussian_blur(
                &self.small,
                &mut self.current,
                Size::new(k, k),
                0.0,
                0.0,
                BORDER_DEFAULT,
            )
            .cv("blurring for motion")?;
        } else {
            self.small
                .copy_to(&mut self.current)
                .cv("copying for motion")?;
        }
        let comparable = self.has_previous
            && self.previous.size().cv("previous size")?
                == self.current.size().cv("current size")?;
        let fraction = if comparable {
            core::absdiff(&self.current, &self.previous, &mut self.diff)
                .cv("differencing for motion")?;
            imgproc::threshold(
                &self.diff,
                &mut self.changed,
                f64::from(self.cfg.pixel_threshold),
                255.0,
                imgproc::THRESH_BINARY,
            )
            .cv("thresholding for motion")?;
            let changed = core::count_non_zero(&self.changed).cv("counting changed pixels")?;
            let total = self.changed.total().max(1);
            f64::from(changed) / total as f64
        } else {
            0.0
        };
        std::mem::swap(&mut self.current, &mut self.previous);
        self.has_previous = true;
        Ok(fraction)
    }

    /// [`measure`](Self::measure) of a JPEG (or PNG) frame's bytes, decoded cheaply: grey, at
    /// an eighth of its size (a 960-pixel frame is still 120 wide, more than the small image).
    /// Bytes that do not decode are an [`AnprError::Decode`].
    pub fn measure_encoded(&mut self, bytes: &[u8]) -> Result<f64, AnprError> {
        let buf = Vector::<u8>::from_slice(bytes);
        let decoded = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_REDUCED_GRAYSCALE_8);
        match decoded {
            Ok(m) if !m.empty() => self.decoded = m,
            Ok(_) => {
                return Err(AnprError::Decode {
                    len: bytes.len(),
                    reason: "not an image OpenCV can decode".to_owned(),
                })
            }
            Err(e) => {
                return Err(AnprError::Decode {
                    len: bytes.len(),
                    reason: e.to_string(),
                })
            }
        }
        let decoded = std::mem::take(&mut self.decoded);
        let fraction = self.measure(&decoded);
        self.decoded = decoded;
        fraction
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcp_sim::plate_render;
    use opencv::core::{Scalar, CV_16UC3, CV_8UC3};

    fn meter() -> MotionMeter {
        MotionMeter::new(MotionConfig::default()).expect("default config is valid")
    }

    #[test]
    fn the_first_frame_has_no_motion_and_identical_frames_none() -> anyhow::Result<()> {
        let frame = plate_render::render_vehicle_mat("1234 AB 01", 3)?;
        let mut m = meter();
        assert_eq!(m.measure(&frame)?, 0.0, "first frame");
        let again = m.measure(&frame)?;
        assert!(again < 0.001, "identical frame: {again}");
        Ok(())
    }

    #[test]
    fn an_empty_lane_stays_quiet_and_a_vehicle_coming_on_is_motion() -> anyhow::Result<()> {
        let mut m = meter();
        let mut quiet = Vec::new();
        for variant in 0..4 {
            let empty = plate_render::render_empty_lane_frame(variant)?;
            quiet.push(m.measure_encoded(&empty)?);
        }
        assert!(
            quiet.iter().all(|f| *f < 0.01),
            "empty lane frames (noise, JPEG): {quiet:?}"
        );
        let vehicle = plate_render::render_vehicle_frame("1234 AB 01", 5)?;
        let on = m.measure_encoded(&vehicle)?;
        assert!(on > 0.2, "a vehicle appearing: {on}");
        let moved = plate_render::render_vehicle_frame("1234 AB 01", 6)?;
        let moving = m.measure_encoded(&moved)?;
        assert!(moving > 0.02, "the vehicle moved a little: {moving}");
        Ok(())
    }

    #[test]
    fn an_empty_or_corrupt_frame_is_an_error_and_keeps_the_previous_frame() -> anyhow::Result<()> {
        let frame = plate_render::render_vehicle_mat("1234 AB 01", 3)?;
        let mut m = meter();
        m.measure(&frame)?;
        assert!(matches!(
            m.measure(&Mat::default()),
            Err(AnprError::UnsupportedFrame(_))
        ));
        let deep = Mat::new_rows_cols_with_default(10, 10, CV_16UC3, Scalar::all(1.0))?;
        assert!(matches!(
            m.measure(&deep),
            Err(AnprError::UnsupportedFrame(_))
        ));
        assert!(matches!(
            m.measure_encoded(b"\xff\xd8 not a jpeg at all"),
            Err(AnprError::Decode { .. })
        ));
        assert!(matches!(
            m.measure_encoded(&[]),
            Err(AnprError::Decode { .. })
        ));
        let after = m.measure(&frame)?;
        assert!(after < 0.001, "compared with the last good frame: {after}");
        Ok(())
    }

    #[test]
    fn a_frame_of_another_size_starts_again_at_zero() -> anyhow::Result<()> {
        let mut m = meter();
        let big = Mat::new_rows_cols_with_default(540, 960, CV_8UC3, Scalar::all(10.0))?;
        let tall = Mat::new_rows_cols_with_default(960, 540, CV_8UC3, Scalar::all(200.0))?;
        m.measure(&big)?;
        assert_eq!(m.measure(&tall)?, 0.0);
        Ok(())
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        for (cfg, key) in [
            (
                MotionConfig {
                    width_px: 4,
                    ..MotionConfig::default()
                },
                "width_px",
            ),
            (
                MotionConfig {
                    blur_px: 4,
                    ..MotionConfig::default()
                },
                "blur_px",
            ),
            (
                MotionConfig {
                    pixel_threshold: 0,
                    ..MotionConfig::default()
                },
                "pixel_threshold",
            ),
        ] {
            match MotionMeter::new(cfg) {
                Err(AnprError::Settings(crate::SettingsError::Config { key: k, .. })) => {
                    assert_eq!(k, key)
                }
                other => panic!("{cfg:?}: {other:?}"),
            }
        }
    }
}
