#!/usr/bin/python3
"""Prints the messages of a Maildir (DIR/new) as a JSON array, parsed with
Python's own e-mail package: an independent check that what lull sends is
valid MIME. Each: file, message_id, from, to, subject, auto_submitted,
text, html, images [{cid, bytes, png}], size."""
import email
import email.policy
import json
import os
import sys

out = []
new = os.path.join(sys.argv[1], "new")
for name in sorted(os.listdir(new)) if os.path.isdir(new) else []:
    raw = open(os.path.join(new, name), "rb").read()
    m = email.message_from_bytes(raw, policy=email.policy.default)
    item = {"file": name, "size": len(raw), "message_id": m["Message-ID"], "from": m["From"],
            "to": m["To"], "subject": m["Subject"], "auto_submitted": m["Auto-Submitted"],
            "raw_headers": raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("ascii", "replace"),
            "text": None, "html": None, "images": []}
    for part in m.walk():
        ct = part.get_content_type()
        if ct == "text/plain":
            item["text"] = part.get_content()
        elif ct == "text/html":
            item["html"] = part.get_content()
        elif ct.startswith("image/"):
            data = part.get_payload(decode=True)
            item["images"].append({"cid": part["Content-ID"], "bytes": len(data),
                                   "png": data[:8] == b"\x89PNG\r\n\x1a\n"})
    out.append(item)
print(json.dumps(out))
