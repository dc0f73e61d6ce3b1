#!/usr/bin/python3
"""A scriptable SMTP relay for lull's fault tests: plain asyncio, no TLS,
so that every answer and every delay is exactly what a test asks for.

    relay.py --dir DIR [--port N]

prints `PORT <n>` once it listens. Each message is answered by the rules in
DIR/rules.json (read again for every message, so a test can change them
between runs):

    {"rules": {"a@x.example": ["slow:6", "accept"]}, "default": "accept"}

For a recipient, the Nth message (counted by the relay) takes the Nth
behaviour of its list (the last one repeats):

- `accept`: 250 at once;
- `slow:S`: the message is committed (written, as a relay that queued it
  would have), then the 250 comes S seconds later — to a client that may
  have given up;
- `drop`: the connection is closed after the final `.`, nothing committed;
- `dropmid`: the connection is closed half-way through the message data;
- `NNN text`: that reply to the final `.` (e.g. `554 5.7.1 rejected`,
  `451 4.3.0 later`), nothing committed.

Every committed message is one line of DIR/accepted.jsonl:
{"to": ..., "message_id": ..., "bytes": ..., "at": ...}.
"""
import argparse
import asyncio
import json
import os
import re
import time

p = argparse.ArgumentParser()
p.add_argument("--dir", required=True)
p.add_argument("--port", type=int, default=0)
a = p.parse_args()
os.makedirs(a.dir, exist_ok=True)
seen = {}


def behaviour(rcpt):
    try:
        with open(os.path.join(a.dir, "rules.json")) as f:
            rules = json.load(f)
    except FileNotFoundError:
        rules = {}
    steps = rules.get("rules", {}).get(rcpt) or [rules.get("default", "accept")]
    n = seen.get(rcpt, 0)
    seen[rcpt] = n + 1
    return steps[min(n, len(steps) - 1)]


def commit(rcpts, data):
    m = re.search(rb"^Message-ID:\s*(\S+)", data, re.M | re.I)
    with open(os.path.join(a.dir, "accepted.jsonl"), "a") as f:
        for r in rcpts:
            f.write(json.dumps({
                "to": r,
                "message_id": m.group(1).decode() if m else None,
                "bytes": len(data),
                "at": time.time(),
            }) + "\n")
        f.flush()
        os.fsync(f.fileno())


async def session(reader, writer):
    def send(line):
        writer.write((line + "\r\n").encode())

    send("220 relay.test ESMTP scriptable")
    rcpts = []
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd = line.decode(errors="replace").strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                send("250-relay.test")
                send("250-8BITMIME")
                send("250 SIZE 50000000")
            elif verb == "MAIL":
                rcpts = []
                send("250 2.1.0 OK")
            elif verb == "RCPT":
                m = re.search(r"<([^>]*)>", cmd)
                rcpts.append(m.group(1) if m else cmd)
                send("250 2.1.5 OK")
            elif verb == "DATA":
                send("354 go ahead")
                await writer.drain()
                how = behaviour(rcpts[0] if rcpts else "")
                data = b""
                while True:
                    l = await reader.readline()
                    if not l:
                        return
                    if how == "dropmid" and len(data) > 200:
                        writer.close()
                        return
                    if l in (b".\r\n", b".\n"):
                        break
                    data += l[1:] if l.startswith(b"..") else l
                if how == "drop":
                    writer.close()
                    return
                if how == "accept":
                    commit(rcpts, data)
                    send("250 2.0.0 queued")
                elif how.startswith("slow:"):
                    commit(rcpts, data)
                    await asyncio.sleep(float(how[5:]))
                    send("250 2.0.0 queued (late)")
                else:
                    send(how)
            elif verb == "RSET":
                rcpts = []
                send("250 OK")
            elif verb == "NOOP":
                send("250 OK")
            elif verb == "QUIT":
                send("221 bye")
                await writer.drain()
                writer.close()
                return
            else:
                send("502 5.5.2 not implemented")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return


async def main():
    server = await asyncio.start_server(session, "127.0.0.1", a.port)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()

try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
