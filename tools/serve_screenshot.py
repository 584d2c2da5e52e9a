"""The screenshot of docs/serve.md: the page of `biounet serve` with a result, in headless Chromium.

    .venv/bin/python tools/serve_screenshot.py --out docs/images/serve-page.png

Starts the service (the built-in model, float32) on a free loopback port, opens its page in Debian's
Chromium (Playwright drives it; its own browser download is not used), chooses a 512 x 512 ISBI 2012
test slice (../shared/data/isbi2012) through the page's file input as a person would, waits for the
result and stores the whole page as a palette PNG (256 colours) to keep the file small.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ISBI_TEST = ROOT.parent / "shared" / "data" / "isbi2012" / "test-volume.tif"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CHROMIUM_ARGS += ["--disable-component-update", "--disable-sync", "--no-first-run"]


def start_service(model: str, work: Path) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "biounet", "serve", "--model", model, "--precision", "fp32"]
    command += ["--port", "0", "--work-dir", str(work)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
        if found:
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe drained
            return process, int(found.group(1))
    raise SystemExit(f"the service ended before it listened (exit status {process.wait()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "serve-page.png")
    parser.add_argument("--model", default="isbi2012-membranes")
    parser.add_argument("--slice", type=int, default=0, help="slice of the ISBI 2012 test volume")
    parser.add_argument("--labels", default="watershed", help="the page's cell method (or none)")
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 900), metavar=("WIDTH", "HEIGHT"))
    args = parser.parse_args()

    import tifffile
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory(prefix="serve-shot-") as tmp:
        image = Path(tmp) / f"isbi-test-{args.slice:02d}.png"
        Image.fromarray(tifffile.imread(ISBI_TEST, key=args.slice)).save(image)
        work = Path(tmp) / "work"
        work.mkdir()
        process, port = start_service(args.model, work)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": args.size[0], "height": args.size[1]})
                page.goto(f"http://127.0.0.1:{port}/")
                expect(page.locator("#status")).to_have_text("ready")
                page.select_option("#labels", args.labels)
                page.set_input_files("#file", str(image))
                expect(page.locator("#status")).to_contain_text("done", timeout=300_000)
                for _ in range(100):  # the pictures decode after the status says done
                    if page.eval_on_selector("#overlay", "img => img.complete && img.naturalWidth > 0"):
                        break
                    page.wait_for_timeout(100)
                shot = Path(tmp) / "page.png"
                page.screenshot(path=str(shot), full_page=True)
                browser.close()
        finally:
            process.terminate()
            process.wait(60)
        rgb = Image.open(shot).convert("RGB")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {rgb.width}x{rgb.height}, {args.out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
