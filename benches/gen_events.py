#!/usr/bin/env python3
"""Generate a benchmark workload for `lull import`.

    benches/gen_events.py OUT_DIR [--events 1000000] [--accounts 10000] [--seed 1] [--order random|time]

Writes OUT_DIR/lull.toml, OUT_DIR/accounts.toml and OUT_DIR/events.jsonl:
events spread over two years and three sources, 70% naming their account,
30% an actor e-mail resolved through the account's domain (some on a
subdomain), 2% repeating an earlier id with another time (as overlapping
polls and re-dated exports do). `--order time` sorts the lines by time (a
history exported from another tool); `random` (the default) leaves them
in random time order.
"""
import argparse
import datetime as dt
import os
import random

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--events", type=int, default=1_000_000)
p.add_argument("--accounts", type=int, default=10_000)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--order", choices=["random", "time"], default="random")
a = p.parse_args()
rng = random.Random(a.seed)
os.makedirs(a.out, exist_ok=True)

with open(os.path.join(a.out, "accounts.toml"), "w") as f:
    for i in range(a.accounts):
        f.write(f'[[account]]\nid = "acct-{i:05d}"\nname = "Account {i}"\n'
                f'csm = "csm-{i % 50}@vendor.example"\nsegment = "seg-{i % 7}"\n'
                f'domains = ["acct{i:05d}.example.com"]\n\n')
with open(os.path.join(a.out, "lull.toml"), "w") as f:
    f.write('[store]\npath = "data/lull.db"\n\n[accounts]\nfile = "accounts.toml"\n\n'
            '[identity]\nignore_domains = ["vendor.example"]\n')

start = dt.datetime(2024, 11, 1, tzinfo=dt.timezone.utc)
sources = [("forum", "post"), ("support", "ticket"), ("mail", "open")]
# Heavy-tailed activity: a few accounts make most of the noise.
weights = [1.0 / (1 + i) ** 0.8 for i in range(a.accounts)]
accts = rng.choices(range(a.accounts), weights=weights, k=a.events)
lines = []
for n, acct in enumerate(accts):
    src, kind = sources[n % 3]
    at = start + dt.timedelta(seconds=rng.randrange(730 * 86400))
    ident = n if rng.random() > 0.02 else rng.randrange(n + 1)
    if rng.random() < 0.7:
        who = f'"account": "acct-{acct:05d}"'
    else:
        sub = "mail." if rng.random() < 0.3 else ""
        who = f'"actor": "user{rng.randrange(40)}@{sub}acct{acct:05d}.example.com"'
    lines.append((at, f'{{{who}, "source": "{src}", "at": "{at:%Y-%m-%dT%H:%M:%SZ}", '
                      f'"id": "{src}-{ident}", "kind": "{kind}"}}\n'))
if a.order == "time":
    lines.sort(key=lambda l: l[0])
with open(os.path.join(a.out, "events.jsonl"), "w") as f:
    f.writelines(l for _, l in lines)
