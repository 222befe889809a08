//! MT-SICS replies and commands: see common.rs for what is checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use bcp_drivers::mt_sics;
    common::check(data, mt_sics::decode_reply, None);
    common::check(data, mt_sics::decode_command, None);
});
