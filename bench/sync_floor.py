#!/usr/bin/env python3
"""What one sync per message costs any sender at one connection, on this machine.

A minimal SMTP client sends the same message N times over one connection to a running
smtp-sink, twice: once straight through, once with one `pwrite` + `fdatasync` (a 200-byte
record into a file already filled with zeros, as the send log makes it) between each DATA
command's 354 and the message's content: the one sync per message that keeping at most one
message in doubt per connection needs there. It prints the µs per message of each pass,
then what the sync added and what one such sync takes alone, in a loop:

    none_us sync_us added_us alone_us

The difference between the last two is what a sync costs inside an SMTP exchange beyond
its own time in isolation (the exits and wake-ups of a virtual machine around it): a floor
that no sender which syncs there can go under. Talks to 127.0.0.1 only.

    bench/sync_floor.py --port 39125 --n 2000 --message sample.eml [--sync-first]

With --spacing, it times the sync alone instead, with the thread asleep for each of the
given µs between syncs (interleaved rounds; no server needed): a sync that follows an idle
moment takes longer than one of a tight loop, and in a send at one connection the syncs
come one per message, some hundreds of µs apart.

    bench/sync_floor.py --spacing 0,300,1000 [--rounds 5]

With --alone N, it times N syncs back to back and prints the median µs and the CPU the
whole machine spent per sync (bench/smtp.sh's probe of one fdatasync, each round).

    bench/sync_floor.py --alone 1000
"""
import argparse
import os
import socket
import statistics
import time

PROBE_LEN = 1 << 22


def message_bytes(path):
    """The message as it goes on the wire: CRLF line ends, dot-stuffed, ended by CRLF.CRLF."""
    text = open(path, "rb").read().replace(b"\r\n", b"\n").split(b"\n")
    if text and text[-1] == b"":
        text.pop()
    lines = [b"." + line if line.startswith(b".") else line for line in text]
    return b"\r\n".join(lines) + b"\r\n.\r\n"


def machine_busy():
    """Clock ticks all cores spent other than idle or waiting for I/O, so far."""
    ticks = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4]


class Probe:
    """A file of zeros that takes one small record and one fdatasync per call."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(self.fd, b"\0" * PROBE_LEN)
        os.fsync(self.fd)
        self.offset = 0

    def sync(self):
        """Writes the next record and makes it durable; returns the fdatasync's seconds."""
        os.pwrite(self.fd, b"x" * 200, self.offset % PROBE_LEN)
        self.offset += 200
        t = time.perf_counter()
        os.fdatasync(self.fd)
        return time.perf_counter() - t

    def alone(self, n=300, spacing_us=0):
        """One fdatasync alone, the thread asleep `spacing_us` before each: the median µs,
        and the CPU the whole machine spent per sync (all cores, from /proc/stat: in a
        virtual machine the flush's exits and interrupts cost CPU outside this process)."""
        times = []
        busy = machine_busy()
        for _ in range(n):
            if spacing_us:
                time.sleep(spacing_us / 1e6)
            times.append(self.sync())
        cpu_us = (machine_busy() - busy) / os.sysconf("SC_CLK_TCK") / n * 1e6
        return statistics.median(times) * 1e6, cpu_us

    def close(self):
        os.close(self.fd)
        os.unlink(self.path)


def reply(f):
    """Reads one (possibly multi-line) reply; fails on anything but 2xx/3xx."""
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("the server closed the connection")
        if line[3:4] != b"-":
            if line[:1] not in (b"2", b"3"):
                raise SystemExit(f"the server refused: {line!r}")
            return


def one_pass(port, n, body, probe):
    """µs per message over one connection; with `probe`, one sync before each content."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"EHLO floor.example\r\n")
    reply(f)
    envelope = b"MAIL FROM:<weekly@harbour.example>\r\nRCPT TO:<reader@example.org>\r\nDATA\r\n"
    start = time.perf_counter()
    for _ in range(n):
        s.sendall(envelope)  # pipelined, as the sender does
        for _ in range(3):
            reply(f)
        if probe is not None:
            probe.sync()
        s.sendall(body)
        reply(f)
    elapsed = time.perf_counter() - start
    s.sendall(b"QUIT\r\n")
    s.close()
    return elapsed / n * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, help="a running smtp-sink's port on 127.0.0.1")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--message", help="the .eml file to send")
    p.add_argument("--probe", default="sync_floor.probe", help="the file to sync (on the disk to measure)")
    p.add_argument("--sync-first", action="store_true", help="run the pass with syncs first")
    p.add_argument("--spacing", help="time the sync alone after each of these idle µs (e.g. 0,300,1000)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of --spacing")
    p.add_argument("--alone", type=int, metavar="N", help="time N syncs back to back: prints µs and CPU µs per sync")
    a = p.parse_args()
    if a.alone is not None:
        if not 1 <= a.alone <= 100_000:
            raise SystemExit("--alone must be 1..100000")
        probe = Probe(a.probe)
        try:
            us, cpu_us = probe.alone(n=a.alone)
        finally:
            probe.close()
        print(f"{us:.0f} {cpu_us:.0f}")
        return None
    if a.spacing is not None:
        return spacing(a)
    if a.port is None or a.message is None:
        raise SystemExit("--port and --message are needed (or --spacing)")
    if not 1 <= a.n <= 100_000:
        raise SystemExit("--n must be 1..100000")
    body = message_bytes(a.message)
    probe = Probe(a.probe)
    try:
        order = ["sync", "none"] if a.sync_first else ["none", "sync"]
        times = {w: one_pass(a.port, a.n, body, probe if w == "sync" else None) for w in order}
        none_us, sync_us = times["none"], times["sync"]
        alone, _ = probe.alone()
    finally:
        probe.close()
    print(f"{none_us:.0f} {sync_us:.0f} {sync_us - none_us:.0f} {alone:.0f}")


def spacing(a):
    """Prints, per idle time before each sync, the median sync over the rounds and its spread."""
    try:
        gaps = [int(g) for g in a.spacing.split(",")]
    except ValueError:
        raise SystemExit("--spacing takes µs separated by commas, e.g. 0,300,1000")
    if not gaps or any(not 0 <= g <= 100_000 for g in gaps) or not 1 <= a.rounds <= 50:
        raise SystemExit("--spacing: each 0..100000 µs; --rounds 1..50")
    probe = Probe(a.probe)
    results = {g: [] for g in gaps}
    try:
        for r in range(a.rounds):
            for g in gaps if r % 2 == 0 else list(reversed(gaps)):
                results[g].append(probe.alone(spacing_us=g)[0])
    finally:
        probe.close()
    for g, v in results.items():
        print(f"idle {g} µs before each sync: one sync {statistics.median(v):.0f} µs ({min(v):.0f}-{max(v):.0f})")


if __name__ == "__main__":
    main()
