//! XK3190 formats 0, 1 and 2: see common.rs for what is checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use bcp_drivers::xk3190::{Xk3190Codec, Xk3190Format};
    for format in [Xk3190Format::Xor, Xk3190Format::Reversed, Xk3190Format::Normal] {
        let c = Xk3190Codec::new(format);
        common::check(data, |b| c.decode(b), Some(&|f, out| c.encode(f, out)));
    }
});
