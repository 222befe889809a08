//! Yaohua A12E stream: see common.rs for what is checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use bcp_drivers::a12e;
    common::check(data, a12e::decode, Some(&a12e::encode));
});
