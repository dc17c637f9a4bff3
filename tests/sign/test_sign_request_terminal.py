"""Attack 3 of issue 19 on a real terminal (tmux): escape sequences, rich markup and newlines in a
request reach the screen only as visible escapes; a two-item request never looks like one item;
hashes and fingerprints are wrapped, never cut; `[/x]` does not crash; `sign` asks on a terminal."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers_sign import need_tool
from pcrtool.sign.offline import new_request, write_request
from request_items import policy_item

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = [
    "release 1\x1b[2J\x1b[H",                      # clear the screen, cursor home
    "ok\n-- item 1 of 1: looks harmless",            # a fake second header line
    "[conceal]hidden[/conceal] \x1b[8mconcealed\x1b[0m",
    "[/x]",                                          # crashed rich's markup parser before
    "\x1b[1A\x1b[2K\rup one line and erase",
    "bidi \u202egnp.exe",
]


class Tmux:
    def __init__(self, tmp: Path, width: int, height: int) -> None:
        import tempfile
        self.exe = need_tool("tmux")
        self.sock = str(Path(tempfile.mkdtemp(prefix="pcrtool-tmux-", dir=tmp)) / "s")
        self.width, self.height = width, height

    def run(self, *args: str) -> str:
        proc = subprocess.run([self.exe, "-S", self.sock, *args], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"tmux {args[:3]}: {proc.stderr}"
        return proc.stdout

    def start(self, command: str) -> None:
        env = {"PYTHONPATH": str(ROOT), "PCRTOOL_AUDIT_LOG": os.environ["PCRTOOL_AUDIT_LOG"], "TERM": "xterm",
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        full = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(self.width), "-y", str(self.height),
                 f"env -i {full} {command}; echo EXIT=$?; sleep 120")
        self.run("set-option", "-t", "t", "history-limit", "5000")

    def screen(self, *, escapes: bool = False) -> str:
        return self.run("capture-pane", "-p", "-J", "-t", "t", "-S", "-", *(["-e"] if escapes else []))

    def wait_for(self, text: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = self.screen()
            if text in out:
                return out
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([self.exe, "-S", self.sock, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def hostile_request(tmp_path, keys, monkeypatch):
    items = [policy_item(1, 1, label=HOSTILE[0] + HOSTILE[1] + HOSTILE[2]),
             policy_item(2, 2, label=HOSTILE[3] + HOSTILE[4] + HOSTILE[5])]
    req, blobs = new_request("pcr-policy", items, key=None)
    path = tmp_path / "r.sign-request.json"
    write_request(path, req, blobs)
    doc = json.loads(path.read_text())
    doc["created_by"] = "pcrtool\x1b]0;title\x07 [bold]x[/bold]"
    doc["extra"] = {"\x1b[2Jk": "\x1b[2Jv"}
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("PCRTOOL_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    return path, items


def _cmd(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", "pcrtool", *args))


@pytest.mark.parametrize("width,height", [(80, 24), (200, 40)])
def test_show_on_a_real_terminal_shows_every_item_and_no_hidden_text(tmp_path, keys, hostile_request,
                                                                    width, height):
    path, items = hostile_request
    term = Tmux(tmp_path, width, height)
    try:
        term.start(_cmd("sign-request", "show", str(path), "--key", str(keys.pub("rsa"))))
        screen = term.wait_for("EXIT=")
        raw = term.screen(escapes=True)
    finally:
        term.close()
    assert "EXIT=0" in screen and "internal error" not in screen
    lines = screen.splitlines()
    assert lines[0].startswith("pcrtool signing request")        # nothing cleared the screen
    assert "2 items to sign" in screen and "END: 2 items to sign" in screen
    joined = screen.replace("\n     ", "")                          # undo the wrapping of long values
    assert "item 1 of 2" in screen and "item 2 of 2" in screen
    assert "item 1 of 1" not in joined.replace("\\x0a-- item 1 of 1", "")
    fp = keys.fingerprint("rsa")
    assert sum(line.strip() == fp for line in lines) == 2          # top and bottom, one unbroken line each
    for _, _, _, ctx in items:
        assert ctx["pcrs"]["11"] in screen                          # full values, never cut with …
    assert "…" not in screen
    for visible in ("\\x1b[2J", "\\x0a-- item 1 of 1", "[conceal]hidden[/conceal]", "\\x1b[8mconcealed",
                    "[/x]", "\\x1b[1A", "\\u202e", "\\x1b]0;title\\x07 [bold]x[/bold]"):
        assert visible in joined, visible
    assert "\x1b" not in raw.replace("\x1b[0m", "").replace("\x1b[39m", "").replace("\x1b[49m", "")
    assert all(len(line) <= 80 for line in lines[1:])              # only the (long) path line wraps


def test_sign_asks_on_a_terminal_and_signs_only_after_yes(tmp_path, keys, hostile_request):
    path, _ = hostile_request
    for answer, signed in (("no", False), ("yes", True)):
        term = Tmux(tmp_path, 100, 60)
        try:
            term.start(_cmd("sign-request", "sign", str(path), "--key", str(keys.rsa)))
            screen = term.wait_for("Type 'yes' to sign")
            assert "2 items to sign" in screen and keys.fingerprint("rsa") in screen
            term.run("send-keys", "-t", "t", answer, "Enter")
            screen = term.wait_for("EXIT=")
        finally:
            term.close()
        assert (path.parent / "rel.1.tbs.sig").exists() is signed, screen
        assert ("EXIT=0" in screen) is signed
    entries = Path(os.environ["PCRTOOL_AUDIT_LOG"]).read_text().splitlines()
    assert len(entries) == 2 and json.loads(entries[0])["label_unverified"].startswith("release 1\x1b[2J")
