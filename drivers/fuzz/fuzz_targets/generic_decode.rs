//! The generic regex protocol with an A&D-style pattern: see common.rs for what is checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use bcp_drivers::generic::GenericCodec;
    let c = GenericCodec::new(r"^(?P<motion>US)?(?:ST|OL)?,(?P<net_flag>NT)?(?:GS)?,(?P<weight>[+-]?[0-9. ]+)(?P<unit>kg|g|t)$")
        .expect("the pattern is valid");
    common::check(data, |b| c.decode(b), None);
});
