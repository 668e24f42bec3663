"""Screenshots of the ladder report and of optuna-dashboard showing a rung, in a real headless browser.

    python benchmarks/screenshots.py STORAGE [--name ladder] [--out docs/figures] [--browser chromium]
    python benchmarks/screenshots.py --figure docs/figures/comparison_cpu.html

Writes ``report.png`` (``optuna-lrlaw report`` rendered offline) and ``dashboard.png`` (the
first rung's study page in optuna-dashboard, whose figures and note `run_ladder` saved).
With ``--figure``, renders a plotly HTML figure to a PNG beside it instead (the static image
of a figure for docs read without JavaScript).
Needs Chromium or Chrome (``apt-get install chromium``) and ``pip install
'optuna-lrlaw[dashboard]'``. A rung climbed before figures were saved gets them here first
(`publish_to_dashboard`).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from optuna_lrlaw.ladder.run import load_ladder
from optuna_lrlaw.visualization import ladder_report, publish_to_dashboard


def screenshot(browser: str, url: str, out: Path, height: int) -> None:
    """A full-width PNG of ``url`` after its scripts have had 15 s of (virtual) time to draw."""
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    args += [f"--window-size=1100,{height}", "--virtual-time-budget=15000", f"--screenshot={out}", url]
    subprocess.run(args, check=True, capture_output=True, timeout=180)
    print(f"wrote {out}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port: int, server: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the dashboard accepts connections (it can take a while on a busy machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"optuna-dashboard exited with code {server.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"optuna-dashboard did not listen on port {port} within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("storage", nargs="?")
    parser.add_argument("--figure", type=Path, help="render this HTML figure to a PNG beside it, and stop")
    parser.add_argument("--name", default="ladder")
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--browser", default=shutil.which("chromium") or shutil.which("google-chrome") or "chromium")
    args = parser.parse_args()
    if args.figure:
        screenshot(args.browser, args.figure.resolve().as_uri(), args.figure.with_suffix(".png"), 620)
        return
    if not args.storage:
        parser.error("give a STORAGE (or --figure)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    result, studies = load_ladder(args.storage, args.name)
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "report.html"
        page.write_text(ladder_report(args.storage, args.name), encoding="utf-8")
        screenshot(args.browser, page.as_uri(), args.out / "report.png", 3000)

    first = studies[0]
    publish_to_dashboard(first)
    port = free_port()
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    server = subprocess.Popen(
        [str(dashboard), args.storage, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port, server)
        url = f"http://127.0.0.1:{port}/dashboard/studies/{first._study_id}"
        screenshot(args.browser, url, args.out / "dashboard.png", 2400)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
