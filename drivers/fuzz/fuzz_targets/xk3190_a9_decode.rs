//! XK3190 command mode: replies and requests; see common.rs for what is checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use bcp_drivers::xk3190_a9;
    common::check(data, xk3190_a9::decode_reply, Some(&|r, out| xk3190_a9::encode_reply(r, out)));
    common::check(data, xk3190_a9::decode_request, Some(&|r, out| xk3190_a9::encode_request(r, out)));
});
