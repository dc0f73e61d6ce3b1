#!/usr/bin/env python3
"""Write config/example-events.jsonl: 60 weeks of made-up activity ending
today (or --end YYYY-MM-DD), for the README's first command (detection
needs a year of baseline before the recent weeks).

Five accounts on three sources (a forum, a support portal, marketing mail):
acme, globex and initech stay busy; umbrella's five regulars dwindle to one
(at the same volume) five months before the end, and six weeks before
it the account goes quiet; hooli posts a few times a year. Some staff activity (ignored) and
one actor no account claims (listed by `lull accounts --unmatched`) are
mixed in. Ids are derived from the event itself, so re-running this on a
later day and re-importing adds only the new days.
"""
import argparse
import datetime as dt
import json
import os
import random

p = argparse.ArgumentParser()
p.add_argument("--end", type=dt.date.fromisoformat, default=dt.datetime.now(dt.timezone.utc).date())
p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "example-events.jsonl"))
a = p.parse_args()

# account -> (forum posts/week, tickets/week, mails/week, open rate, people)
PROFILE = {
    "acme": (9, 2, 3, 0.45, ["wile_e", "ann@acme.com", "raj@eu.acme.com"]),
    "globex": (5, 1, 3, 0.35, ["hank@globex.io", "mindy@globex.io"]),
    "initech": (3, 2, 3, 0.30, ["peter.gibbons@gmail.com", "milton@initech.example"]),
    "umbrella": (6, 2, 3, 0.40, ["alice@umbrella-health.example", "carlos@umbrella-health.example",
                                 "dana@umbrella-health.example", "eve@umbrella-health.example",
                                 "femi@umbrella-health.example"]),
    "hooli": (0.1, 0.05, 3, 0.20, ["gavin@hooli.example"]),
}
# account -> (only its first person is active from this many days before the
# end, and nobody from this many)
DWINDLE = {"umbrella": (150, 40)}

start = a.end - dt.timedelta(weeks=60) + dt.timedelta(days=1)
events = []


def emit(source, kind, actor, day, n, seq):
    t = dt.datetime.combine(day, dt.time(8 + (seq * 7) % 10, (seq * 13) % 60), dt.timezone.utc)
    events.append({"actor": actor, "source": source, "at": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "id": f"{source}-{day.isoformat()}-{actor}-{kind}-{n}", "kind": kind})


for account, (posts, tickets, mails, open_rate, people) in sorted(PROFILE.items()):
    rng = random.Random(account)  # stable per account
    for i in range((a.end - start).days + 1):
        day = start + dt.timedelta(days=i)
        weekday = day.weekday() < 5
        before_end = (a.end - day).days
        one, gone = DWINDLE.get(account, (-1, -1))
        active = [] if before_end < gone else people[:1] if before_end < one else people
        scale = 1.0 if weekday else 0.2
        day_rng = random.Random(f"{account}/{day}")
        for n in range(sum(day_rng.random() < posts / 5 * scale / 3 for _ in range(3))):
            if active:
                emit("forum", "post", day_rng.choice(active), day, n, n)
        for n in range(int(day_rng.random() < tickets / 5 * scale)):
            if active:
                emit("support", "ticket", day_rng.choice(active), day, n, n + 3)
        if day.weekday() == 1:  # the weekly newsletter goes out on Tuesdays
            for n, person in enumerate(p for p in people if "@" in p):
                emit("mail", "delivered", person, day, n, n)
                if person in active and day_rng.random() < open_rate:
                    emit("mail", "open", person, day, n, n + 1)
for i in range(0, (a.end - start).days + 1, 3):
    day = start + dt.timedelta(days=i)
    emit("forum", "post", "moderator_mia", day, 0, i)          # staff: ignored
    emit("forum", "post", "jane.doe@vendor.example", day, 1, i)  # staff: ignored
    if i % 9 == 0:
        emit("forum", "post", "newcomer@startup.example", day, 2, i)  # unmatched

events.sort(key=lambda e: (e["at"], e["id"]))
with open(a.out, "w") as f:
    for e in events:
        f.write(json.dumps(e) + "\n")
print(f"wrote {len(events)} events ({start} .. {a.end}) to {a.out}")
