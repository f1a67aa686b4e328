"""Drives headless Chromium with JavaScript turned off through the DevTools protocol, as
a reader would: open a page, type into fields, tick or untick boxes, press a button, and
print the page the browser ends up on (its URL on the first line, then its HTML).

Usage: forms.py CHROMIUM URL STEPS_JSON
STEPS_JSON is a list of ["type", selector, text] | ["check", selector] |
["uncheck", selector] | ["click", selector].
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import websocket


def main():
    chromium, url, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    profile = tempfile.mkdtemp(prefix="chromium-")
    browser = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            # No JavaScript at all: the pages must work as plain HTML forms.
            "--blink-settings=scriptEnabled=false",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + 60
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.time() > deadline:
                sys.exit("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = open(port_file).read().split()[0]
        import urllib.request

        deadline = time.time() + 30
        while True:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            if time.time() > deadline:
                sys.exit("no page target")
            time.sleep(0.05)
        ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60)
        Driver(ws).run(url, steps)
    finally:
        browser.kill()
        browser.wait()
        # Each run's profile is a few megabytes; left behind, a day of test runs fills /tmp.
        shutil.rmtree(profile, ignore_errors=True)


class Driver:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    sys.exit(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_load(self):
        deadline = time.time() + 60
        while True:
            for e in self.events:
                if e.get("method") == "Page.loadEventFired":
                    self.events.clear()
                    return
            self.events.clear()
            if time.time() > deadline:
                sys.exit("the page did not load")
            self.ws.settimeout(max(0.1, deadline - time.time()))
            self.events.append(json.loads(self.ws.recv()))

    def node(self, selector):
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            sys.exit(f"no element {selector!r} on the page")
        return node

    def run(self, url, steps):
        self.call("Page.enable")
        self.call("Emulation.setScriptExecutionDisabled", value=True)
        self.call("Page.navigate", url=url)
        self.wait_load()
        for step in steps:
            kind, selector = step[0], step[1]
            if kind == "type":
                self.call("DOM.focus", nodeId=self.node(selector))
                self.call("Input.insertText", text=step[2])
            elif kind in ("check", "uncheck"):
                node = self.node(selector)
                checked = self.call("DOM.getAttributes", nodeId=node)["attributes"]
                is_checked = "checked" in checked[0::2]
                if is_checked != (kind == "check"):
                    self.click(node)
            elif kind == "click":
                self.click(self.node(selector))
                self.wait_load()
            else:
                sys.exit(f"unknown step {kind}")
        history = self.call("Page.getNavigationHistory")
        final = history["entries"][history["currentIndex"]]["url"]
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        html = self.call("DOM.getOuterHTML", nodeId=root)["outerHTML"]
        print(final)
        print(html)

    def click(self, node):
        self.call("DOM.scrollIntoViewIfNeeded", nodeId=node)
        quad = self.call("DOM.getBoxModel", nodeId=node)["model"]["content"]
        x = (quad[0] + quad[4]) / 2
        y = (quad[1] + quad[5]) / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


if __name__ == "__main__":
    main()
