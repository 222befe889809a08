//! The vision worker's protocol: what the agent asks of a `bcp-vision` process and what it
//! answers (the worker itself is `bcp_anpr::worker`).
//!
//! # Wire format
//! A message (either way) is a JSON header and binary attachments (frames, JPEGs), each part
//! prefixed by its length as a little-endian `u32`:
//!
//! ```text
//! header_len  header (JSON)  count  { len  bytes } * count
//! ```
//!
//! The header is at most [`MAX_HEADER`] bytes, an attachment at most [`MAX_ATTACHMENT`], at
//! most [`MAX_ATTACHMENTS`] of them: a longer length is an error, never an allocation. The
//! worker answers each request with exactly one reply, in order. After a [`Reply::Panicked`]
//! it exits: its state is not trusted any more.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::settings::{AnprConfig, CaptureConfig, EvidenceConfig, MotionConfig};
use crate::PlateCandidate;

/// Longest JSON header accepted.
pub const MAX_HEADER: u32 = 16 << 20;
/// Largest attachment accepted (a raw scan image may be tens of MiB).
pub const MAX_ATTACHMENT: u32 = 512 << 20;
/// Most attachments in one message.
pub const MAX_ATTACHMENTS: u32 = 8;

/// What the agent asks of its worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Load the ANPR engine, and a motion meter when `motion` is set. Answered
    /// [`Reply::Loaded`].
    Load {
        anpr: Box<AnprConfig>,
        motion: Option<MotionConfig>,
    },
    /// Recognise the encoded frame in attachment 0 (and measure its motion when a meter is
    /// loaded). Answered [`Reply::Reads`].
    Recognise,
    /// Start capturing a stream (RTSP, HTTP MJPEG, a video file). Answered [`Reply::Done`].
    OpenStream {
        camera: String,
        url: String,
        capture: CaptureConfig,
    },
    /// The stream's next frame within `wait_ms`, recognised. Answered [`Reply::StreamFrame`]
    /// or [`Reply::NoFrame`].
    NextStreamFrame { wait_ms: u64, jpeg_quality: u8 },
    /// Cut the plate crop and the overview from the JPEG frame in attachment 0. Answered
    /// [`Reply::PlateImages`].
    PlateImages {
        bbox: [i32; 4],
        cfg: Box<EvidenceConfig>,
    },
    /// A reduced JPEG of the scan image in attachment 0. Answered [`Reply::Thumbnail`].
    Thumbnail {
        max_side: u32,
        cfg: Box<EvidenceConfig>,
    },
}

/// A frame's motion: measured, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Motion {
    Fraction(f64),
    NotMeasured(String),
}

/// What the worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The engine is loaded; `ms` it took.
    Loaded { ms: u64 },
    /// The request was carried out; nothing to return.
    Done,
    /// A frame's reads, best first; `ms` recognition took; its motion when a meter is loaded.
    Reads {
        reads: Vec<PlateCandidate>,
        ms: f64,
        motion: Option<Motion>,
    },
    /// A stream frame: its sequence number, how long ago it was grabbed, its reads (or why it
    /// was not read), its motion; attachment 0, when its best read has text, is the frame as
    /// JPEG (or `jpeg_error` says why not).
    StreamFrame {
        seq: u64,
        age_ms: u64,
        reads: Result<Vec<PlateCandidate>, String>,
        ms: f64,
        motion: Option<Motion>,
        jpeg_error: Option<String>,
    },
    /// No stream frame came within the wait.
    NoFrame,
    /// Attachments: the plate crop, the overview. `crop` is where the crop was cut.
    PlateImages { crop: [i32; 4] },
    /// Attachment 0: the thumbnail.
    Thumbnail,
    /// The request failed (a frame that does not decode, an engine that does not load, ...).
    Failed { error: String },
    /// The worker's code panicked on the request; the worker exits after this reply.
    Panicked { message: String },
}

/// Writes one message.
pub fn write_message<W: Write, H: Serialize>(
    out: &mut W,
    header: &H,
    attachments: &[&[u8]],
) -> io::Result<()> {
    let json = serde_json::to_vec(header).map_err(io::Error::other)?;
    let len = |n: usize, max: u32, what: &str| {
        u32::try_from(n).ok().filter(|n| *n <= max).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} of {n} bytes is over {max}"),
            )
        })
    };
    out.write_all(&len(json.len(), MAX_HEADER, "a header")?.to_le_bytes())?;
    out.write_all(&json)?;
    let count = len(attachments.len(), MAX_ATTACHMENTS, "an attachment count")?;
    out.write_all(&count.to_le_bytes())?;
    for a in attachments {
        out.write_all(&len(a.len(), MAX_ATTACHMENT, "an attachment")?.to_le_bytes())?;
        out.write_all(a)?;
    }
    out.flush()
}

/// Reads one message; `None` at a clean end of input (before a message starts).
pub fn read_message<R: Read, H: DeserializeOwned>(
    input: &mut R,
) -> io::Result<Option<(H, Vec<Vec<u8>>)>> {
    let mut word = [0u8; 4];
    // The end of input is clean only before a message's first byte.
    loop {
        match input.read(&mut word[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    input.read_exact(&mut word[1..])?;
    let header = read_part(input, u32::from_le_bytes(word), MAX_HEADER, "header")?;
    let header = serde_json::from_slice(&header).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a malformed header: {e}"),
        )
    })?;
    input.read_exact(&mut word)?;
    let count = u32::from_le_bytes(word);
    if count > MAX_ATTACHMENTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{count} attachments, over {MAX_ATTACHMENTS}"),
        ));
    }
    let mut attachments = Vec::new();
    for _ in 0..count {
        input.read_exact(&mut word)?;
        attachments.push(read_part(
            input,
            u32::from_le_bytes(word),
            MAX_ATTACHMENT,
            "attachment",
        )?);
    }
    Ok(Some((header, attachments)))
}

fn read_part<R: Read>(input: &mut R, len: u32, max: u32, what: &str) -> io::Result<Vec<u8>> {
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {what} of {len} bytes, over {max}"),
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_their_attachments() -> io::Result<()> {
        let mut wire = Vec::new();
        let request = Request::Thumbnail {
            max_side: 320,
            cfg: Box::default(),
        };
        write_message(&mut wire, &request, &[b"one", b"", &[0xff; 1000]])?;
        write_message(&mut wire, &Request::Recognise, &[])?;
        let mut input = &wire[..];
        let (got, blobs) = read_message::<_, Request>(&mut input)?.expect("a message");
        assert_eq!(got, request);
        assert_eq!(blobs, vec![b"one".to_vec(), Vec::new(), vec![0xff; 1000]]);
        let (got, blobs) = read_message::<_, Request>(&mut input)?.expect("a message");
        assert_eq!((got, blobs.len()), (Request::Recognise, 0));
        assert!(
            read_message::<_, Request>(&mut input)?.is_none(),
            "a clean end"
        );
        Ok(())
    }

    #[test]
    fn a_candidate_keeps_its_format_code_across_the_wire() -> io::Result<()> {
        let reply = Reply::Reads {
            reads: vec![PlateCandidate {
                text: "1234AB01".into(),
                confidence: 0.9,
                bbox: [1, 2, 3, 4],
                format: Some("TJ"),
                char_confidences: vec![0.9; 8],
            }],
            ms: 12.5,
            motion: Some(Motion::Fraction(0.25)),
        };
        let mut wire = Vec::new();
        write_message(&mut wire, &reply, &[])?;
        let (got, _) = read_message::<_, Reply>(&mut &wire[..])?.expect("a message");
        assert_eq!(got, reply);
        Ok(())
    }

    #[test]
    fn truncated_oversized_and_malformed_messages_are_errors_not_allocations() {
        let mut wire = Vec::new();
        write_message(&mut wire, &Request::Recognise, &[b"frame"]).expect("written");
        for cut in 1..wire.len() {
            let got = read_message::<_, Request>(&mut &wire[..cut]);
            assert!(got.is_err(), "cut at {cut}: {got:?}");
        }
        let huge = (MAX_HEADER + 1).to_le_bytes();
        let e = read_message::<_, Request>(&mut &huge[..]).expect_err("too long");
        assert!(e.to_string().contains("over"), "{e}");
        let mut bad = 5u32.to_le_bytes().to_vec();
        bad.extend_from_slice(b"{nope");
        let e = read_message::<_, Request>(&mut &bad[..]).expect_err("not JSON");
        assert!(e.to_string().contains("malformed"), "{e}");
    }
}
