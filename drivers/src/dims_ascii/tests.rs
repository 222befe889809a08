//! Hand-computed vectors (checksums worked out byte by byte, independently of `xor` here), then
//! round-trip and resynchronisation properties.

use super::*;
use proptest::prelude::*;

fn frame(seq: u32, length_mm: u32, width_mm: u32, height_mm: u32) -> DimensionFrame {
    DimensionFrame {
        seq,
        length_mm,
        width_mm,
        height_mm,
    }
}

fn encoded(f: &DimensionFrame) -> Vec<u8> {
    let mut out = Vec::new();
    encode(f, &mut out);
    out
}

const VECTORS: [(&[u8], DimensionFrame); 3] = [
    (
        b"$DIM,1,16500,2550,4000*45\r\n",
        DimensionFrame {
            seq: 1,
            length_mm: 16500,
            width_mm: 2550,
            height_mm: 4000,
        },
    ),
    (
        b"$DIM,0,0,0,0*40\r\n",
        DimensionFrame {
            seq: 0,
            length_mm: 0,
            width_mm: 0,
            height_mm: 0,
        },
    ),
    (
        b"$DIM,4294967295,18750,2600,4100*77\r\n",
        DimensionFrame {
            seq: u32::MAX,
            length_mm: 18750,
            width_mm: 2600,
            height_mm: 4100,
        },
    ),
];

#[test]
fn vectors_decode_and_encode() {
    for (bytes, expected) in VECTORS {
        assert_eq!(decode(bytes), Ok(Some((expected, bytes.len()))));
        assert_eq!(encoded(&expected), bytes);
    }
}

#[test]
fn lenient_forms() {
    let f = frame(1, 16500, 2550, 4000);
    // Lowercase checksum, bare LF, leading zeros (which change the XOR: 0x45 ^ '0' = 0x75).
    assert_eq!(decode(b"$DIM,1,16500,2550,4000*45\n"), Ok(Some((f, 26))));
    assert_eq!(decode(b"$DIM,01,16500,2550,4000*75\r\n"), Ok(Some((f, 28))));
    assert_eq!(
        decode(b"$DIM,0,0,0,0*40\r\n").map(|o| o.map(|(f, _)| f.seq)),
        Ok(Some(0))
    );
}

#[test]
fn errors() {
    let kind = |bytes: &[u8]| decode(bytes).expect_err("must be rejected").kind;
    assert_eq!(
        kind(b"$DIM,1,16500,2550,4000*46\r\n"),
        FrameErrorKind::Checksum {
            computed: 0x45,
            received: 0x46
        }
    );
    assert!(matches!(
        kind(b"$DIM,1,16500,2550*00\r\n"),
        FrameErrorKind::Checksum { .. }
    ));
    // Right checksum, wrong grammar (checksums computed by `line`).
    let line = |body: &str| {
        let cs = body.bytes().fold(0, |a, b| a ^ b);
        format!("${body}*{cs:02X}\r\n").into_bytes()
    };
    assert_eq!(line("DIM,1,2,3"), b"$DIM,1,2,3*5C\r\n");
    for body in [
        "DIM,1,2,3",
        "DIM,1,2,3,4,5",
        "DIM,-1,2,3,4",
        "DIM,+1,2,3,4",
        "DIM,,2,3,4",
        "DIM,4294967296,1,1,1",
        "DIM, 1,2,3,4",
        "DIX,1,2,3,4",
    ] {
        assert!(
            matches!(kind(&line(body)), FrameErrorKind::Malformed { .. }),
            "{body}"
        );
    }
    // No star, star without two hex digits.
    assert!(matches!(
        kind(b"$DIM,1,2,3,4\r\n"),
        FrameErrorKind::Malformed { .. }
    ));
    assert!(matches!(
        kind(b"$DIM,1,2,3,4*4\r\n"),
        FrameErrorKind::Malformed { .. }
    ));
    assert!(matches!(
        kind(b"$DIM,1,2,3,4*4G\r\n"),
        FrameErrorKind::Malformed { .. }
    ));
    // Not a DIM sentence.
    assert!(matches!(
        kind(b"$GPGGA*56\r\n"),
        FrameErrorKind::Malformed { .. }
    ));
}

#[test]
fn skips() {
    // A bad line is dropped whole.
    let bad = b"$DIM,1,16500,2550,4000*46\r\n$DIM";
    assert_eq!(decode(bad).expect_err("bad").skip, 27);
    // Noise before a start.
    assert_eq!(decode(b"xx$DIM").expect_err("noise").skip, 2);
    assert_eq!(decode(b"xyz").expect_err("noise").skip, 3);
    // A second '$' before the newline: resume there.
    assert_eq!(decode(b"$DI$DIM,").expect_err("restart").skip, 3);
    // Incomplete lines wait.
    for len in 0..VECTORS[0].0.len() {
        assert_eq!(decode(&VECTORS[0].0[..len]), Ok(None));
    }
}

#[test]
fn line_length_limit() {
    // A 128-byte line (with padding zeros) is accepted; 129 is garbage.
    let line_of = |len: usize| {
        let pad = len - b"$DIM,,1,1,1*hh\r\n".len();
        let body = format!("DIM,{},1,1,1", "0".repeat(pad));
        let cs = body.bytes().fold(0, |a, b| a ^ b);
        format!("${body}*{cs:02X}\r\n").into_bytes()
    };
    let ok = line_of(MAX_LINE);
    assert_eq!(ok.len(), MAX_LINE);
    assert_eq!(decode(&ok), Ok(Some((frame(0, 1, 1, 1), MAX_LINE))));
    let long = line_of(MAX_LINE + 1);
    let err = decode(&long).expect_err("too long");
    assert_eq!(err.kind, FrameErrorKind::TooLong { max: MAX_LINE });
    assert_eq!(err.skip, MAX_LINE);
    // Without a newline, 127 bytes still wait; 128 are garbage.
    let mut open = b"$".to_vec();
    open.resize(MAX_LINE - 1, b'0');
    assert_eq!(decode(&open), Ok(None));
    open.push(b'0');
    assert!(decode(&open).is_err());
}

fn arb_frame() -> impl Strategy<Value = DimensionFrame> {
    any::<[u32; 4]>().prop_map(|[s, l, w, h]| frame(s, l, w, h))
}

proptest! {
    #[test]
    fn round_trip(f in arb_frame()) {
        let bytes = encoded(&f);
        prop_assert!(bytes.len() <= MAX_LINE);
        prop_assert_eq!(decode(&bytes), Ok(Some((f, bytes.len()))));
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn resynchronises_after_garbage(
        garbage in prop::collection::vec(
            prop_oneof![any::<u8>(), Just(b'$'), Just(b'\n'), Just(b'*')], 0..300),
        f in arb_frame(),
    ) {
        let mut buf = garbage;
        encode(&f, &mut buf);
        let mut pos = 0;
        let mut last = None;
        while pos < buf.len() {
            match decode(&buf[pos..]) {
                Ok(Some((frame, n))) => { last = Some(frame); pos += n; }
                Ok(None) => break,
                Err(e) => { prop_assert!(e.skip >= 1); pos += e.skip; }
            }
        }
        prop_assert_eq!(pos, buf.len());
        prop_assert_eq!(last, Some(f));
    }
}
