//! Weigh-Tronix stream: see common.rs for what is checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use bcp_drivers::avery;
    common::check(data, avery::decode, Some(&avery::encode));
});
