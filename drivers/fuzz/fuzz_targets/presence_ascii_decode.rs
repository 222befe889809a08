//! `ENTRY 1` / `EXIT 0` presence lines: see common.rs for what is checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use bcp_drivers::presence_ascii;
    common::check(data, presence_ascii::decode, Some(&presence_ascii::encode));
});
