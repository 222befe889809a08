//! The vision worker: OpenCV and ONNX Runtime in a process of their own.
//!
//! The agent daemon runs unattended for months; the native libraries behind recognition
//! (OpenCV's decoders and video I/O, ONNX Runtime) are large C++ code bases fed with whatever
//! a camera sends. A bug there may panic, abort or crash the process it runs in. So the agent
//! does not link them: each camera (and the crossing images) gets a `bcp-vision` child
//! process that answers [`Request`]s on its stdin with [`Reply`]s on its stdout, and the agent
//! treats the child's death as a crash of that engine only (frame set aside, restart counted,
//! child started again). An idle agent also stays small: loading OpenCV with what Debian's
//! build links (GDAL, GDCM, poppler, FFmpeg, ...) costs ~65 MB of resident memory before
//! anything is read.
//!
//!
//! The protocol (requests, replies, the wire format) is `bcp_anpr_core::worker`, re-exported
//! here: the agent uses it without linking this crate's native code.

use std::io::{self, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

pub use bcp_anpr_core::worker::*;

use crate::capture::{Camera, Source};
use crate::{plate_images_from_jpeg, thumbnail_from_bytes, MotionMeter, PlateReader};

/// What one worker holds between requests.
#[derive(Default)]
struct Worker {
    reader: Option<PlateReader>,
    meter: Option<MotionMeter>,
    stream: Option<Camera>,
}

/// Serves requests from `input` until it ends (Ok) or a message is malformed or a panic was
/// answered (then the worker should exit).
pub fn serve<R: Read, W: Write>(mut input: R, mut output: W) -> io::Result<()> {
    let mut worker = Worker::default();
    while let Some((request, attachments)) = read_message::<_, Request>(&mut input)? {
        match catch_unwind(AssertUnwindSafe(|| worker.handle(request, attachments))) {
            Ok((reply, blobs)) => {
                let blobs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
                write_message(&mut output, &reply, &blobs)?;
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                write_message(&mut output, &Reply::Panicked { message }, &[])?;
                return Err(io::Error::other(
                    "the worker panicked; its state is not trusted",
                ));
            }
        }
    }
    Ok(())
}

/// What a request comes to: the reply and its attachments, or why it failed.
type Handled = Result<(Reply, Vec<Vec<u8>>), String>;

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// A measured motion, or why it was not measured.
fn motion(measured: Result<f64, crate::AnprError>) -> Motion {
    match measured {
        Ok(fraction) => Motion::Fraction(fraction),
        Err(e) => Motion::NotMeasured(e.to_string()),
    }
}

impl Worker {
    /// The reply to `request`; a request that fails is [`Reply::Failed`] with the reason.
    fn handle(&mut self, request: Request, attachments: Vec<Vec<u8>>) -> (Reply, Vec<Vec<u8>>) {
        self.try_handle(request, attachments)
            .unwrap_or_else(|error| (Reply::Failed { error }, Vec::new()))
    }

    fn try_handle(&mut self, request: Request, attachments: Vec<Vec<u8>>) -> Handled {
        let first = || {
            attachments
                .into_iter()
                .next()
                .ok_or_else(|| "the request has no attachment".to_owned())
        };
        match request {
            Request::Load { anpr, motion } => {
                let started = Instant::now();
                let meter = motion
                    .map(MotionMeter::new)
                    .transpose()
                    .map_err(|e| format!("motion settings: {e}"))?;
                let reader =
                    PlateReader::new(&anpr).map_err(|e| format!("loading the ANPR engine: {e}"))?;
                self.reader = Some(reader);
                self.meter = meter;
                let ms = started.elapsed().as_millis() as u64;
                Ok((Reply::Loaded { ms }, Vec::new()))
            }
            Request::Recognise => {
                let frame = first()?;
                let reader = self
                    .reader
                    .as_mut()
                    .ok_or("the ANPR engine is not loaded")?;
                let motion = self
                    .meter
                    .as_mut()
                    .map(|m| motion(m.measure_encoded(&frame)));
                let started = Instant::now();
                let reads = reader.read_image_bytes(&frame).map_err(|e| e.to_string())?;
                let ms = ms_since(started);
                Ok((Reply::Reads { reads, ms, motion }, Vec::new()))
            }
            Request::OpenStream {
                camera,
                url,
                capture,
            } => {
                self.stream = None; // the old capture's thread ends first
                let stream = Camera::start(&camera, Source::Stream(url), &capture)
                    .map_err(|e| e.to_string())?;
                self.stream = Some(stream);
                Ok((Reply::Done, Vec::new()))
            }
            Request::NextStreamFrame {
                wait_ms,
                jpeg_quality,
            } => self.next_stream_frame(Duration::from_millis(wait_ms), jpeg_quality),
            Request::PlateImages { bbox, cfg } => {
                let made =
                    plate_images_from_jpeg(&first()?, bbox, &cfg).map_err(|e| e.to_string())?;
                Ok((
                    Reply::PlateImages { crop: made.crop },
                    vec![made.plate_crop, made.overview],
                ))
            }
            Request::Thumbnail { max_side, cfg } => {
                let jpeg =
                    thumbnail_from_bytes(&first()?, max_side, &cfg).map_err(|e| e.to_string())?;
                Ok((Reply::Thumbnail, vec![jpeg]))
            }
        }
    }

    fn next_stream_frame(&mut self, wait: Duration, jpeg_quality: u8) -> Handled {
        let (Some(stream), Some(reader)) = (self.stream.as_ref(), self.reader.as_mut()) else {
            return Err("no stream is open, or the ANPR engine is not loaded".to_owned());
        };
        let Some(frame) = stream.next_frame(wait) else {
            return Ok((Reply::NoFrame, Vec::new()));
        };
        let motion = self.meter.as_mut().map(|m| motion(m.measure(&frame.image)));
        let started = Instant::now();
        let reads = reader.read_mat(&frame.image).map_err(|e| e.to_string());
        let ms = ms_since(started);
        let has_text = reads
            .as_ref()
            .is_ok_and(|r| r.first().is_some_and(|r| !r.text.is_empty()));
        let (mut blobs, mut jpeg_error) = (Vec::new(), None);
        if has_text {
            match frame.to_jpeg(jpeg_quality) {
                Ok(jpeg) => blobs.push(jpeg),
                Err(e) => jpeg_error = Some(e.to_string()),
            }
        }
        let reply = Reply::StreamFrame {
            seq: frame.seq,
            age_ms: frame.captured_at.elapsed().as_millis() as u64,
            reads,
            ms,
            motion,
            jpeg_error,
        };
        Ok((reply, blobs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_without_an_engine_says_so_and_decodes_nothing() -> io::Result<()> {
        let mut requests = Vec::new();
        write_message(&mut requests, &Request::Recognise, &[b"not a jpeg"])?;
        write_message(
            &mut requests,
            &Request::Thumbnail {
                max_side: 64,
                cfg: Box::default(),
            },
            &[b"not an image"],
        )?;
        let mut replies = Vec::new();
        serve(&requests[..], &mut replies)?;
        let mut input = &replies[..];
        let (first, _) = read_message::<_, Reply>(&mut input)?.expect("a reply");
        assert!(
            matches!(&first, Reply::Failed { error } if error.contains("not loaded")),
            "{first:?}"
        );
        let (second, blobs) = read_message::<_, Reply>(&mut input)?.expect("a reply");
        assert!(matches!(second, Reply::Failed { .. }), "{second:?}");
        assert!(blobs.is_empty());
        Ok(())
    }
}
