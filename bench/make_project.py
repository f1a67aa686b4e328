#!/usr/bin/env python3
"""Writes a benchmark project: N subscribers, eight articles sized so that each
personalized message is about 40 KB, and a config that sends to 127.0.0.1:PORT."""

import argparse
import pathlib

WORDS = (
    "harbour ferry council budget library tide quay market winter storm wall island "
    "timetable crossing residents season repairs evening weather plans berth lantern "
    "fishermen catch school bridge road lighthouse museum festival rain morning"
).split()


def paragraph(seed: int, words: int) -> str:
    out = [WORDS[(seed * 7 + i * 13) % len(WORDS)] for i in range(words)]
    out[0] = out[0].capitalize()
    lines, line = [], []
    for w in out:
        line.append(w)
        if len(line) == 12:
            lines.append(" ".join(line))
            line = []
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines) + "."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--port", type=int, default=39125)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--body-words", type=int, default=160)
    args = ap.parse_args()

    root = pathlib.Path(args.dir)
    (root / "articles").mkdir(parents=True, exist_ok=True)
    (root / "key").write_text("bench-key-for-throughput-runs\n")
    (root / "key").chmod(0o600)
    (root / "newsletter.toml").write_text(f"""[newsletter]
name = "Harbour Weekly"
from = "Harbour Weekly <weekly@harbour.example>"
reply_to = "desk@harbour.example"
contact = "desk@harbour.example"
website = "https://harbour.example"
list_id = "weekly.harbour.example"

[unsubscribe]
url = "https://harbour.example/unsubscribe/{{token}}"
mailto = "unsubscribe@harbour.example"
secret_file = "key"

[transport]
kind = "smtp"

[smtp]
host = "127.0.0.1"
port = {args.port}
security = "none"
connections = {args.connections}
max_per_connection = 1000000
""")
    for i in range(8):
        body = "\n\n".join(paragraph(i * 10 + k, args.body_words // 3) for k in range(3))
        (root / "articles" / f"story-{i + 1}.md").write_text(f"""+++
title = "Story {i + 1}: {WORDS[i].capitalize()} news from the {WORDS[i + 5]}"
date = 2026-11-{20 + i % 7:02d}
link = "https://harbour.example/news/story-{i + 1}"
summary = "{paragraph(i, 30).replace(chr(10), ' ')}"
selected = true

[image]
url = "https://harbour.example/media/story-{i + 1}.jpg"
alt = "A photograph for story {i + 1}"
caption = "The {WORDS[i + 2]} at dawn."
credit = "Staff photographer"
+++
{body}
""")
    with open(root / "subscribers.toml", "w") as f:
        for i in range(args.n):
            name = f'name = "Reader {i}"\n' if i % 3 else ""
            f.write(f'[[subscriber]]\nemail = "reader{i}@example.org"\n{name}status = "subscribed"\n\n')


if __name__ == "__main__":
    main()
