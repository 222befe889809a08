//! Test helpers shared by the protocol modules: decode a whole buffer as a caller does, and the
//! "garbage resynchronises within one frame" property.

use std::fmt::Debug;

use crate::frame::FrameError;

/// Decode every frame in `bytes` as the codec does: skip on error, stop when more bytes are
/// needed. Asserts the contract on the way: progress on every step, never skipping past the end.
pub(crate) fn decode_all<F>(
    decode: impl Fn(&[u8]) -> Result<Option<(F, usize)>, FrameError>,
    bytes: &[u8],
) -> Vec<F> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match decode(&bytes[pos..]) {
            Ok(Some((frame, n))) => {
                assert!(n >= 1 && n <= bytes.len() - pos, "consumed {n}");
                frames.push(frame);
                pos += n;
            }
            Ok(None) => break,
            Err(e) => {
                assert!(
                    e.skip >= 1 && e.skip <= bytes.len() - pos,
                    "skip {}",
                    e.skip
                );
                pos += e.skip;
            }
        }
    }
    frames
}

/// Garbage, then two frames: the second frame always comes out, and is the last thing decoded
/// (garbage may cost at most the one frame it runs into, never the one after).
pub(crate) fn assert_resyncs<F: PartialEq + Debug>(
    decode: impl Fn(&[u8]) -> Result<Option<(F, usize)>, FrameError>,
    garbage: &[u8],
    first: &[u8],
    second: &[u8],
    expected: &F,
) {
    let mut bytes = garbage.to_vec();
    bytes.extend_from_slice(first);
    bytes.extend_from_slice(second);
    let frames = decode_all(decode, &bytes);
    assert_eq!(frames.last(), Some(expected), "from {bytes:02X?}");
}

/// Frames followed by one encoded frame decode back to exactly that frame, consuming it all.
pub(crate) fn assert_round_trip<F: PartialEq + Debug>(
    decode: impl Fn(&[u8]) -> Result<Option<(F, usize)>, FrameError>,
    bytes: &[u8],
    expected: &F,
) {
    match decode(bytes) {
        Ok(Some((frame, n))) => {
            assert_eq!(&frame, expected, "from {bytes:02X?}");
            assert_eq!(n, bytes.len());
        }
        other => panic!("expected a frame from {bytes:02X?}, got {other:?}"),
    }
}
