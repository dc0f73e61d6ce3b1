//! One line of `lull import` (JSON Lines from users' scripts).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lull::import::fuzz(data));
