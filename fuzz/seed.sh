#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the real payloads in tests/fixtures and
# the example config, so the fuzzers start from what services really send.
set -euo pipefail
cd "$(dirname "$0")"
fx=../tests/fixtures
mkdir -p corpus/{import_line,config,accounts,html_page,source_json}
head -50 ../config/example-events.jsonl | split -l 1 - corpus/import_line/events-
cp ../config/lull.toml corpus/config/example.toml && cp ../deploy/lull.toml corpus/config/deploy.toml
cp ../config/accounts.toml corpus/accounts/
cp $fx/html/*.html corpus/html_page/
# source_json: first byte picks the kind, in the order of lull::sources::kinds():
# discourse 0, html 1, zendesk 2, freshdesk 3, mailchimp 4, mailgun 5, postmark 6,
# slack 7, intercom 8.
seed() { { printf "\\x$(printf %02x "$1")"; cat "$2"; } > "corpus/source_json/$(basename "$(dirname "$2")")-$(basename "$2")"; }
for f in $fx/freshdesk/*.json; do seed 3 "$f"; done
for f in $fx/mailgun/*.json; do seed 5 "$f"; done
for f in $fx/postmark/*.json; do seed 6 "$f"; done
for f in $fx/slack/*.json; do seed 7 "$f"; done
for f in $fx/intercom/*.json; do seed 8 "$f"; done
printf '\x00{"latest_posts":[{"id":1,"username":"u","created_at":"2026-01-01T00:00:00Z"}]}' > corpus/source_json/discourse-min.json
printf '\x02{"tickets":[],"end_of_stream":true}' > corpus/source_json/zendesk-min.json
printf '\x04{"campaigns":[],"total_items":0}' > corpus/source_json/mailchimp-min.json
echo "seeded: $(find corpus -type f | wc -l) files"
