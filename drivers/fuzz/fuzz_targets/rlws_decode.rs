//! Rice Lake RLWS stream: see common.rs for what is checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use bcp_drivers::rlws;
    common::check(data, rlws::decode, Some(&rlws::encode));
});
