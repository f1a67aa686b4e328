#!/usr/bin/env python3
"""How `newsletter bounces` reads the bounce corpus, against a reference classifier.

Runs `newsletter bounces --dry-run --json` over every message of the corpus (in a
throw-away project, so nothing is acted on) and compares, record by record, with the
reference results (`classifier-results.json`: one record per failed recipient, `soft` 0
hard / 1 soft / -1 undecided):

  agreement   over the records the reference decided (soft 0 or 1): ours hard -> 0,
              ours soft or sender-side -> 1; reported with and without the exclusions
              listed in EXCLUSIONS.toml beside the corpus, each with its reason
  recipients  records whose recipient we name too (placeholders `...@libsisimai.org.invalid`
              left out)

    python3 bench/bounce_corpus.py [--bin target/release/newsletter] [--corpus DIR] [--verbose]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def ours(binary, corpus):
    messages = os.path.join(corpus, "messages")
    files = sorted(os.path.join(messages, f) for f in os.listdir(messages))
    with tempfile.TemporaryDirectory() as project:
        subprocess.run([binary, "init", project], check=True, capture_output=True)
        out = subprocess.run(
            [binary, "-c", os.path.join(project, "newsletter.toml"), "--quiet",
             "bounces", "--dry-run", "--json", *files],
            check=True, capture_output=True, text=True, timeout=600,
        ).stdout
    result = {}
    for line in out.splitlines():
        o = json.loads(line)
        result[os.path.basename(o["file"])] = o
    return result


def hard_or_soft(kind):
    return {"hard": 0, "soft": 1, "sender-side": 1}.get(kind)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "newsletter"))
    p.add_argument("--corpus", default=os.path.join(ROOT, "tests", "fixtures", "bounces"))
    p.add_argument("--verbose", action="store_true", help="list every disagreement")
    p.add_argument("--check", action="store_true",
                   help="exit 1 below the bar: 95%% agreement without exclusions, 98%% recipients, at most 15 exclusions")
    args = p.parse_args()

    reference = json.load(open(os.path.join(args.corpus, "classifier-results.json")))
    with open(os.path.join(args.corpus, "EXCLUSIONS.toml"), "rb") as f:
        exclusions = {e["file"]: e["reason"] for e in tomllib.load(f).get("exclusion", [])}
    got = ours(args.bin, args.corpus)

    decided = agree = decided_x = agree_x = 0
    named = found = 0
    disagreements, missing = [], []
    for r in reference:
        if "soft" not in r:
            continue
        o = got.get(r["file"], {"items": [], "kind": "none"})
        items = o["items"]
        mine = next((i for i in items if (i.get("reported") or "").lower() == r["recipient"].lower()), None)
        if not r["recipient"].endswith("@libsisimai.org.invalid"):
            named += 1
            if mine:
                found += 1
            else:
                missing.append((r["file"], r["recipient"], [i.get("reported") for i in items]))
        if r["soft"] not in (0, 1):
            continue
        judged = mine or (items[0] if items else None)
        ok = judged is not None and hard_or_soft(judged["kind"]) == r["soft"]
        decided += 1
        agree += ok
        if r["file"] not in exclusions:
            decided_x += 1
            agree_x += ok
        if not ok:
            disagreements.append((r["file"], r["recipient"], r["reason"], r["soft"], r["status"],
                                  judged["kind"] if judged else o["kind"],
                                  (judged or {}).get("status"), (judged or {}).get("diagnostic", o.get("note"))))

    print(f"messages read:            {len(got)}")
    print(f"hard/soft agreement:      {agree}/{decided} = {100 * agree / decided:.1f}% (no exclusion)")
    print(f"  with the exclusions:    {agree_x}/{decided_x} = {100 * agree_x / decided_x:.1f}% ({len(exclusions)} excluded files)")
    print(f"recipients found:         {found}/{named} = {100 * found / named:.1f}%")
    if args.check:
        short = []
        if 100 * agree / decided < 95:
            short.append("agreement below 95%")
        if 100 * found / named < 98:
            short.append("recipients found below 98%")
        if len(exclusions) > 15:
            short.append("more than 15 exclusions")
        if short:
            print("BELOW THE BAR: " + "; ".join(short))
            args.verbose = True
            code = 1
        else:
            code = 0
    else:
        code = 0
    if args.verbose:
        for d in disagreements:
            print("DISAGREE", *d, sep=" | ")
        for m in missing:
            print("MISSING", *m, sep=" | ")
    return code


if __name__ == "__main__":
    sys.exit(main())
