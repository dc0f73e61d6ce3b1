//! Response bodies of every connector kind: the first byte picks the
//! kind, the rest is the body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kinds = lull::sources::kinds();
    lull::sources::fuzz_json(kinds[pick as usize % kinds.len()], body);
});
