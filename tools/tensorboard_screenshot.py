"""The README's screenshot: a real TensorBoard showing a real run's confusion matrix and misclassified digits.

    apt-get install -y chromium                       # Debian's Chromium (/usr/bin/chromium)
    npm install --prefix /tmp/playwright playwright-core
    .venv/bin/python tools/tensorboard_screenshot.py --playwright /tmp/playwright docs/images/tensorboard.png

Trains `mnist-gpu --seed 1` (the tutorial's 2000 steps, the default backend) into a temporary
folder, starts `tensorboard --logdir` on it (the [test] extra installs TensorBoard), waits until
TensorBoard serves both pictures, and has tools/tensorboard_screenshot.cjs (Playwright driving
headless Chromium) open the Images tab, tick "Show actual image size" and save the screenshot.
Not part of CI: it needs Chromium and Node.js.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TAGS = {"test/confusion_matrix", "test/misclassified"}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_pictures(url, seconds=120):
    """Until TensorBoard lists both image tags of the run (it loads event files in the background)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}data/plugin/images/tags", timeout=5) as response:
                runs = json.load(response)
            if any(TAGS <= set(tags) for tags in runs.values()):
                return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"TensorBoard at {url} did not serve the pictures within {seconds} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="the PNG to write, e.g. docs/images/tensorboard.png")
    parser.add_argument("--playwright", required=True, help="the folder where `npm install playwright-core` ran")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    options = parser.parse_args()
    output = os.path.abspath(options.output)
    root = tempfile.mkdtemp(prefix="mnist_gpu-screenshot-")
    tensorboard = None
    try:
        subprocess.run([sys.executable, "-m", "mnist_gpu", "--seed", "1", "--log_dir", os.path.join(root, "seed-1")],
                       check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        tensorboard = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", root, "--host",
                                        "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        wait_for_pictures(url)
        environment = {**os.environ, "NODE_PATH": os.path.join(os.path.abspath(options.playwright), "node_modules"),
                       "CHROMIUM": options.chromium}
        subprocess.run(["node", os.path.join(HERE, "tensorboard_screenshot.cjs"), url, output], check=True,
                       env=environment)
        print(f"wrote {output}")
    finally:
        if tensorboard is not None:
            tensorboard.terminate()
            tensorboard.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
