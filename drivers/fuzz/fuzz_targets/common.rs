//! Shared by the fuzz targets: decode arbitrary bytes as a caller does. Never panics, always makes
//! progress, never skips or consumes past the end; what decodes re-encodes to a frame that decodes
//! to the same value.

use bcp_drivers::FrameError;

pub type Decoded<F> = Result<Option<(F, usize)>, FrameError>;

pub fn check<F: PartialEq + std::fmt::Debug>(
    data: &[u8],
    decode: impl Fn(&[u8]) -> Decoded<F>,
    encode: Option<&dyn Fn(&F, &mut Vec<u8>)>,
) {
    let mut pos = 0;
    while pos < data.len() {
        match decode(&data[pos..]) {
            Ok(Some((frame, n))) => {
                assert!(n >= 1 && n <= data.len() - pos);
                if let Some(encode) = encode {
                    let mut again = Vec::new();
                    encode(&frame, &mut again);
                    let (back, _) = decode(&again).expect("re-encoded frame decodes").expect("complete");
                    assert_eq!(back, frame);
                }
                pos += n;
            }
            Ok(None) => break,
            Err(e) => {
                assert!(e.skip >= 1 && e.skip <= data.len() - pos);
                pos += e.skip;
            }
        }
    }
}
