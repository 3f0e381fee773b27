"""The README's picture of the web demo: ``python scripts/app_screenshot.py CKPT [OUT.png]``.

Starts ``python -m clamp.app ckpt=CKPT`` on a free port of 127.0.0.1, opens the page in Debian's Chromium
(playwright, ``/usr/bin/chromium``), picks the bundled CC0 photo with keypoint names on, waits for the
result and saves the page, 1200 px wide, as an optimised PNG (default docs/app_screenshot.png).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1200, 1000


def main() -> None:
    from playwright.sync_api import sync_playwright

    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.splitlines()[0])
    ckpt = Path(sys.argv[1]).resolve()
    out = Path(sys.argv[2]) if len(sys.argv) == 3 else ROOT / "docs" / "app_screenshot.png"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "clamp.app", f"ckpt={ckpt}", f"port={port}", "draw_names=true", "hydra.run.dir=/tmp"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = server.stdout.readline()
        if "http://" not in line:
            sys.exit(f"the app did not start: {line}")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("chelsea.jpg", exact=True).click()
            page.wait_for_selector("#downloads a[download='predictions.json']", timeout=60_000)
            page.wait_for_function("() => [...document.images].every((i) => i.complete)")
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    image = Image.open(out).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"{out} ({image.width}x{image.height}, {out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
