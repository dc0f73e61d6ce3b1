//! A scraped forum page (phpBB preset selectors).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lull::sources::html::fuzz(data));
