#!/usr/bin/env python3
"""Memory and time of an edit of a large subscriber list, measured in one run.

For each list size (200,000 and 2,000,000 entries by default, about 95 bytes an entry, as
a list with names and a comment here and there is), interleaved rounds of:

  idle     `newsletter unsubscribe` on a one-entry list: the process's own footprint
  command  `newsletter unsubscribe ADDRESS` on the large list
  click    a one-click POST to `newsletter serve` on the large list; the figure is the
           growth of serve's peak memory (VmHWM) until the file is rewritten
  baseline the same command with another binary (--baseline-bin), e.g. an older release

Prints, per size, the medians and spreads of the peak resident memory above idle, that as
a multiple of the file's size (the target is at most 3), and the wall time.

    cargo build --release && bench/list_edit.py
    bench/list_edit.py --sizes 200000 --rounds 5 --baseline-bin /path/to/old/newsletter
"""

import argparse
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent

CONFIG = """[newsletter]
name = "Bench Weekly"
from = "Bench Weekly <weekly@bench.example>"
contact = "desk@bench.example"
list_id = "weekly.bench.example"

[unsubscribe]
url = "https://bench.example/unsubscribe/{token}"
secret_file = "key"

[transport]
kind = "outbox"
"""


def write_list(path: pathlib.Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Bench Weekly readers\n\n")
        for i in range(n):
            note = "  # from the autumn fair" if i % 10 == 0 else ""
            f.write(
                f'[[subscriber]]\nemail = "reader{i}@example.org"{note}\n'
                f'name = "Reader Number {i}"\nstatus = "subscribed"\n\n'
            )


def project(work: pathlib.Path, name: str, n: int) -> pathlib.Path:
    d = work / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "newsletter.toml").write_text(CONFIG)
    key = d / "key"
    key.write_text("bench-key-for-list-edit-runs\n")
    os.chmod(key, 0o600)
    write_list(d / "subscribers.toml", n)
    # One article, for the preview that gives a reader's unsubscribe link.
    (d / "articles").mkdir()
    (d / "articles" / "one.md").write_text(
        '+++\ntitle = "The week"\ndate = 2026-11-27\nlink = "https://bench.example/n/1"\n'
        'summary = "A short summary."\nselected = true\n+++\nThe body.\n'
    )
    return d


def run_measured(cmd, cwd) -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of one command, from wait4's rusage."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: {' '.join(cmd)} failed: {err}")
    return usage.ru_maxrss / 1024, wall


def vm_hwm(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def token_path(binary, d: pathlib.Path, email: str) -> str:
    out = subprocess.run(
        [binary, "--config", "newsletter.toml", "preview", "--to", email, "--out", "pv"],
        cwd=d, check=True, capture_output=True, text=True, timeout=600,
    ).stdout.split()[0]
    text = (d / out).read_text()
    start = text.index("https://bench.example/unsubscribe/")
    end = text.index(">", start)
    return text[start + len("https://bench.example"):end]


def click(binary, d: pathlib.Path, email: str) -> tuple[float, float]:
    """serve's peak memory growth (MiB) and the seconds until the file shows the click."""
    path = token_path(binary, d, email)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--config", "newsletter.toml", "serve", "--listen", f"127.0.0.1:{port}"],
        cwd=d, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        proc.stdout.readline()
        before = vm_hwm(proc.pid)
        list_file = d / "subscribers.toml"
        mtime = list_file.stat().st_mtime_ns
        start = time.monotonic()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data=b"List-Unsubscribe=One-Click", method="POST"
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200
        deadline = start + 600
        while list_file.stat().st_mtime_ns == mtime and time.monotonic() < deadline:
            time.sleep(0.01)
        wall = time.monotonic() - start
        time.sleep(0.2)
        return vm_hwm(proc.pid) - before, wall
    finally:
        proc.kill()
        proc.wait()


def spread(xs):
    return f"{statistics.median(xs):8.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "target/release/newsletter"))
    ap.add_argument("--baseline-bin")
    ap.add_argument("--sizes", default="200000,2000000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", default=str(ROOT / "target/bench-list"))
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"error: no binary at {args.bin}: run `cargo build --release` first")
    work = pathlib.Path(args.work)
    idle_dir = project(work, "idle", 1)
    for n in [int(s) for s in args.sizes.split(",")]:
        big = project(work, f"list-{n}", n)
        size = (big / "subscribers.toml").stat().st_size / (1 << 20)
        rows = {"idle": [], "command": [], "click": [], "baseline": []}
        times = {"command": [], "click": [], "baseline": []}
        for r in range(args.rounds):
            # Each round unsubscribes another reader; the list stays the same size.
            who = f"reader{(r * 7919 + n // 2) % n}@example.org"
            rss, _ = run_measured(
                [args.bin, "--config", "newsletter.toml", "unsubscribe", "reader0@example.org"],
                idle_dir,
            )
            rows["idle"].append(rss)
            rss, wall = run_measured(
                [args.bin, "--config", "newsletter.toml", "unsubscribe", who], big
            )
            rows["command"].append(rss)
            times["command"].append(wall)
            grown, wall = click(args.bin, big, f"reader{(r * 104729 + 11) % n}@example.org")
            rows["click"].append(grown)
            times["click"].append(wall)
            if args.baseline_bin:
                rss, wall = run_measured(
                    [args.baseline_bin, "--config", "newsletter.toml", "unsubscribe",
                     f"reader{(r * 31 + 5) % n}@example.org"],
                    big,
                )
                rows["baseline"].append(rss)
                times["baseline"].append(wall)
        idle = statistics.median(rows["idle"])
        print(f"\n{n:,} entries, {size:.1f} MiB file, {args.rounds} interleaved rounds "
              f"(median (min-max))")
        print(f"  idle process            {spread(rows['idle'])} MiB")
        above = [x - idle for x in rows["command"]]
        print(f"  unsubscribe, above idle {spread(above)} MiB  = "
              f"{statistics.median(above) / size:.2f}x the file (target <= 3)   "
              f"{spread(times['command'])} s")
        print(f"  one-click, serve grows  {spread(rows['click'])} MiB  = "
              f"{statistics.median(rows['click']) / size:.2f}x the file (target <= 3)   "
              f"{spread(times['click'])} s to the rewritten file")
        if rows["baseline"]:
            above = [x - idle for x in rows["baseline"]]
            print(f"  baseline, above idle    {spread(above)} MiB  = "
                  f"{statistics.median(above) / size:.2f}x the file   "
                  f"{spread(times['baseline'])} s")


if __name__ == "__main__":
    main()
