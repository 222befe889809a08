//! SMA SCP-0499 replies and requests: see common.rs for what is checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use bcp_drivers::sma;
    common::check(data, sma::decode, Some(&sma::encode));
    common::check(data, sma::decode_request, None);
});
