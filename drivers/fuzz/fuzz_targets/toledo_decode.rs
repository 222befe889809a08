//! Decode arbitrary bytes as a caller does: never panics, always makes progress, and anything
//! decoded re-encodes to the bytes it came from (modulo the tolerated spaces and parity bits).
#![no_main]

use bcp_drivers::ToledoCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for checksum in [false, true] {
        let codec = ToledoCodec { checksum };
        let mut pos = 0;
        while pos < data.len() {
            match codec.decode(&data[pos..]) {
                Ok(Some((frame, n))) => {
                    assert_eq!(n, codec.frame_len());
                    let mut again = Vec::new();
                    codec.encode(&frame, &mut again);
                    assert_eq!(codec.decode(&again), Ok(Some((frame, n))));
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
});
