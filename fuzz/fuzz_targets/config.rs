//! The config file: TOML with line-numbered errors.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = lull::config::Config::from_text(std::path::Path::new("/fuzz/lull.toml"), text);
});
