//! Decode arbitrary bytes as a caller does: never panics, always makes progress, and anything
//! decoded survives an encode/decode round trip.
#![no_main]

use bcp_drivers::dims_ascii;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pos = 0;
    while pos < data.len() {
        match dims_ascii::decode(&data[pos..]) {
            Ok(Some((frame, n))) => {
                assert!(n >= 1 && n <= dims_ascii::MAX_LINE);
                let mut again = Vec::new();
                dims_ascii::encode(&frame, &mut again);
                assert_eq!(dims_ascii::decode(&again), Ok(Some((frame, again.len()))));
                pos += n;
            }
            Ok(None) => break,
            Err(e) => {
                assert!(e.skip >= 1 && e.skip <= data.len() - pos);
                pos += e.skip;
            }
        }
    }
});
