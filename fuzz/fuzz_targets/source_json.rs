//! Response bodies of Discourse, Zendesk, Freshdesk, Mailgun, Postmark and
//! Mailchimp: the first byte picks the service, the rest is the body.
#![no_main]
use lull::sources::config::SourceKind;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kinds = [
        SourceKind::Discourse,
        SourceKind::Zendesk,
        SourceKind::Freshdesk,
        SourceKind::Mailgun,
        SourceKind::Postmark,
        SourceKind::Mailchimp,
    ];
    lull::sources::fuzz_json(kinds[pick as usize % kinds.len()], body);
});
