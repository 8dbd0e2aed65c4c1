"""Refresh the screenshots in docs/img from the real UI: start `imapscope demo`, log in with the
token it prints, and photograph the pages in Debian's Chromium (through Playwright).

    .venv/bin/python scripts/screenshots.py [--out docs/img]

Nothing is drawn by hand: what the pictures show is what the demo shows.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
EXPECTED = {"healthy": "idle", "wrong password": "auth_error", "wrong TLS mode": "connect_error"}


def start_demo(data_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    demo = subprocess.Popen(
        [sys.executable, "-m", "imapscope", "demo", "--port", "0", "--tls-port", "0",
         "--smtp-port", "0", "--ui-port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert demo.stdout is not None
    url = token = ""
    deadline = time.monotonic() + 60
    while not (url and token) and time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        if found := re.search(r"serve \(demo\) on (http://\S+?)/ ", line):
            url = found.group(1)
        if found := re.search(r"token \(for the web UI and API\): (isk_\S+)", line):
            token = found.group(1)
    if not (url and token):
        demo.kill()
        raise SystemExit("the demo did not print its address and token")
    return demo, url, token


def shoot(page: Page, out: Path, name: str) -> None:
    path = out / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        demo, url, token = start_demo(Path(data))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                for scheme, width, height in (("light", 1280, 760), ("dark", 390, 844)):
                    context = browser.new_context(
                        viewport={"width": width, "height": height}, color_scheme=scheme
                    )
                    page = context.new_page()
                    page.goto(f"{url}/login")
                    page.fill("#token", token)
                    page.click("button[type=submit]")
                    for name, state in EXPECTED.items():
                        row = page.locator("tr[data-account]", has_text=name)
                        expect(row.locator(f".badge[data-state={state}]")).to_be_visible(
                            timeout=30_000
                        )
                    suffix = "" if scheme == "light" else "-phone-dark"
                    shoot(page, args.out, f"accounts{suffix}")
                    row = page.locator("tr[data-account]", has_text="wrong password")
                    row.locator(".state-button").click()
                    expect(page.locator("#modal .error-entry").first).to_be_visible()
                    shoot(page, args.out, f"modal{suffix}")
                    page.keyboard.press("Escape")
                    page.locator("tr[data-account]", has_text="healthy").locator("a").first.click()
                    expect(page.locator("#account-live .messages tbody tr").first).to_be_visible()
                    shoot(page, args.out, f"account{suffix}")
                    context.close()
                browser.close()
        finally:
            demo.terminate()
            demo.wait(10)


if __name__ == "__main__":
    main()
