//! tokio-util codecs around the pure protocols.
//!
//! [`ProtocolCodec`] wraps any [`Protocol`] as a `Decoder` + `Encoder`. Garbage is not a stream
//! error: the codec drops the bytes the protocol says to skip, counts them, and yields
//! [`Decoded::Garbage`] so the driver can count and log it; the stream goes on. At end of stream,
//! leftover bytes are reported once as [`FrameErrorKind::Truncated`] garbage instead of the
//! default "bytes remaining on stream" error.

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::dims_ascii::{self, DimensionFrame};
use crate::frame::{FrameError, FrameErrorKind};
use crate::toledo::{ToledoCodec, ToledoFrame};

/// A pure byte protocol: see the crate documentation for the contract.
pub trait Protocol {
    type Frame;
    /// `Ok(None)`: need more bytes. `Ok(Some((frame, consumed)))`. `Err(e)`: drop `e.skip` bytes.
    fn decode(&self, buf: &[u8]) -> Result<Option<(Self::Frame, usize)>, FrameError>;
    /// Append one frame to `out`.
    fn encode(&self, frame: &Self::Frame, out: &mut Vec<u8>);
}

/// `impl Protocol for $unit`, a unit struct standing for a protocol module whose pure functions
/// `$decode(&[u8])` and `$encode(&Frame, &mut Vec<u8>)` do the work (by default the module's
/// `decode` and `encode`).
macro_rules! module_protocol {
    ($unit:ident, $frame:ty) => {
        $crate::codec::module_protocol!($unit, $frame, decode, encode);
    };
    ($unit:ident, $frame:ty, $decode:ident, $encode:ident) => {
        impl $crate::codec::Protocol for $unit {
            type Frame = $frame;
            fn decode(
                &self,
                buf: &[u8],
            ) -> Result<Option<($frame, usize)>, $crate::frame::FrameError> {
                $decode(buf)
            }
            fn encode(&self, frame: &$frame, out: &mut Vec<u8>) {
                $encode(frame, out)
            }
        }
    };
}
pub(crate) use module_protocol;

impl Protocol for ToledoCodec {
    type Frame = ToledoFrame;
    fn decode(&self, buf: &[u8]) -> Result<Option<(ToledoFrame, usize)>, FrameError> {
        ToledoCodec::decode(self, buf)
    }
    fn encode(&self, frame: &ToledoFrame, out: &mut Vec<u8>) {
        ToledoCodec::encode(self, frame, out)
    }
}

/// The `$DIM` line protocol of [`crate::dims_ascii`], as a [`Protocol`] value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DimsAscii;

impl Protocol for DimsAscii {
    type Frame = DimensionFrame;
    fn decode(&self, buf: &[u8]) -> Result<Option<(DimensionFrame, usize)>, FrameError> {
        dims_ascii::decode(buf)
    }
    fn encode(&self, frame: &DimensionFrame, out: &mut Vec<u8>) {
        dims_ascii::encode(frame, out)
    }
}

/// The `ENTRY 1` / `EXIT 0` lines of [`crate::presence_ascii`], as a [`Protocol`] value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceAscii;

impl Protocol for PresenceAscii {
    type Frame = crate::presence_ascii::PresenceLine;
    fn decode(&self, buf: &[u8]) -> Result<Option<(Self::Frame, usize)>, FrameError> {
        crate::presence_ascii::decode(buf)
    }
    fn encode(&self, frame: &Self::Frame, out: &mut Vec<u8>) {
        crate::presence_ascii::encode(frame, out)
    }
}

/// One item from the stream: a frame, or bytes that were skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<F> {
    Frame(F),
    Garbage(FrameError),
}

/// `Decoder`/`Encoder` for a [`Protocol`], with counters.
#[derive(Debug, Clone, Default)]
pub struct ProtocolCodec<P> {
    protocol: P,
    frames_ok: u64,
    frames_bad: u64,
    bytes_skipped: u64,
}

impl<P> ProtocolCodec<P> {
    pub fn new(protocol: P) -> Self {
        Self {
            protocol,
            frames_ok: 0,
            frames_bad: 0,
            bytes_skipped: 0,
        }
    }
    /// Frames decoded so far.
    pub fn frames_ok(&self) -> u64 {
        self.frames_ok
    }
    /// Rejections so far (each may cover many bytes).
    pub fn frames_bad(&self) -> u64 {
        self.frames_bad
    }
    /// Bytes dropped so far.
    pub fn bytes_skipped(&self) -> u64 {
        self.bytes_skipped
    }

    fn skip(&mut self, buf: &mut BytesMut, error: FrameError) -> Decoded<P::Frame>
    where
        P: Protocol,
    {
        let n = error.skip.max(1).min(buf.len());
        buf.advance(n);
        self.frames_bad += 1;
        self.bytes_skipped += n as u64;
        Decoded::Garbage(error)
    }
}

impl<P: Protocol> Decoder for ProtocolCodec<P> {
    type Item = Decoded<P::Frame>;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Self::Item>> {
        match self.protocol.decode(buf) {
            Ok(None) => Ok(None),
            Ok(Some((frame, consumed))) => {
                // A protocol that consumed nothing would yield the same frame forever.
                buf.advance(consumed.max(1).min(buf.len()));
                self.frames_ok += 1;
                Ok(Some(Decoded::Frame(frame)))
            }
            Err(error) => Ok(Some(self.skip(buf, error))),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Self::Item>> {
        if let Some(item) = self.decode(buf)? {
            return Ok(Some(item));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let len = buf.len();
        Ok(Some(self.skip(
            buf,
            FrameError::new(len, FrameErrorKind::Truncated { len }),
        )))
    }
}

impl<P: Protocol> Encoder<&P::Frame> for ProtocolCodec<P> {
    type Error = std::io::Error;

    fn encode(&mut self, frame: &P::Frame, dst: &mut BytesMut) -> std::io::Result<()> {
        let mut out = Vec::new();
        self.protocol.encode(frame, &mut out);
        dst.extend_from_slice(&out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toledo::DecimalPosition;

    #[test]
    fn garbage_is_an_item_and_the_stream_goes_on() {
        let codec = ToledoCodec { checksum: true };
        let frame = ToledoFrame {
            weight_digits: 12340,
            tare_digits: 0,
            decimal: DecimalPosition::Decimals0,
            increment: 1,
            net: false,
            negative: false,
            out_of_range: false,
            motion: false,
            unit_kg: true,
            not_zeroed_at_power_up: false,
            swc: 0x20,
        };
        let mut buf = BytesMut::from(&b"noise\x02xx"[..]);
        let mut wire = Vec::new();
        codec.encode(&frame, &mut wire);
        buf.extend_from_slice(&wire);
        buf.extend_from_slice(b"\x02\x2a");
        let mut dec = ProtocolCodec::new(codec);
        let mut items = Vec::new();
        while let Some(item) = dec.decode(&mut buf).expect("decode never errors") {
            items.push(item);
        }
        assert!(matches!(items.last(), Some(Decoded::Frame(f)) if *f == frame));
        assert_eq!(dec.frames_ok(), 1);
        assert_eq!(dec.frames_bad(), 2);
        assert_eq!(dec.bytes_skipped(), 8);
        // The partial frame at the end is reported once at EOF, then nothing.
        let eof = dec.decode_eof(&mut buf).expect("decode_eof never errors");
        assert!(matches!(
            eof,
            Some(Decoded::Garbage(FrameError {
                kind: FrameErrorKind::Truncated { len: 2 },
                ..
            }))
        ));
        assert_eq!(dec.decode_eof(&mut buf).expect("no error"), None);
    }

    #[test]
    fn dims_codec_round_trip() {
        let frame = DimensionFrame {
            seq: 7,
            length_mm: 16500,
            width_mm: 2550,
            height_mm: 4000,
        };
        let mut codec = ProtocolCodec::new(DimsAscii);
        let mut buf = BytesMut::new();
        Encoder::encode(&mut codec, &frame, &mut buf).expect("encoding to memory");
        assert_eq!(
            codec.decode(&mut buf).expect("no error"),
            Some(Decoded::Frame(frame))
        );
        assert!(buf.is_empty());
    }
}
