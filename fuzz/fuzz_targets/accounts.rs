//! The accounts file: TOML with line-numbered errors.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = lull::accounts::Registry::from_text(
        std::path::Path::new("/fuzz/accounts.toml"),
        text,
        &lull::config::IdentityConfig::default(),
    );
});
