//! Cardinal stream: see common.rs for what is checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use bcp_drivers::cardinal;
    common::check(data, cardinal::decode, Some(&cardinal::encode));
});
