"""``segzoo demo`` in a real browser: headless Chromium (the system package), driven over the DevTools protocol on a
pipe (``--remote-debugging-pipe``: no extra Python package). The page is loaded, a locally saved model picked, a
photo uploaded; the overlay must appear and the legend must list exactly the classes ``predict`` finds, with their
shares. A screenshot is kept in the test's folder."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import segzoo
from segzoo.demo import make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ADE = segzoo.get_pretrained_cfg("segformer-b0-ade").to_dict()


class Browser:
    """Chromium's DevTools protocol over fds 3 (commands in) and 4 (events and results out), NUL-separated JSON."""

    def __init__(self, profile):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def plumb():
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        args = [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            args, pass_fds=(3, 4), preexec_fn=plumb, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer, self._next_id, self.session = b"", 0, None

    def send(self, method: str, timeout: float = 60, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
        raise TimeoutError(method)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        page_status = self.evaluate("document.getElementById('status').textContent")
        raise TimeoutError(f"{expression} stayed false; the page says: {page_status}")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._write)
        os.close(self._read)


@pytest.fixture
def demo_server(tmp_path):
    """The demo serving a locally saved 7-class model (no network needed), on a free port."""
    torch.manual_seed(0)
    model = segzoo.create_model("segformer-test", num_classes=7).eval()
    with torch.no_grad():  # larger random weights: several classes on a photo
        for param in model.parameters():
            if param.ndim > 1:
                param.mul_(3)
    model.pretrained_cfg = {**ADE, "class_names": ADE["class_names"][:7], "palette": ADE["palette"][:7]}
    model.save_pretrained(tmp_path / "model")
    server = make_server(port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", tmp_path / "model", model
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("SEGZOO_REQUIRE_BROWSER"),
    reason="Chromium is not installed (apt-get install -y chromium); CI installs it and sets SEGZOO_REQUIRE_BROWSER=1",
)
def test_demo_page_in_headless_chromium(demo_server, tmp_path):
    assert CHROMIUM is not None, "SEGZOO_REQUIRE_BROWSER is set but Chromium is not installed: apt-get install chromium"
    url, model_dir, model = demo_server
    photo = tmp_path / "chelsea.jpg"
    Image.fromarray(skimage.data.chelsea()).save(photo, quality=95)
    labels = model.predict(str(photo))
    counts = np.bincount(labels.ravel(), minlength=7)
    expected = {ADE["class_names"][c]: counts[c] / labels.size for c in np.nonzero(counts)[0]}
    assert len(expected) >= 2

    browser = Browser(tmp_path / "profile")
    try:
        browser.open(url)
        browser.wait_for("document.querySelectorAll('#checkpoint option').length > 10")
        browser.evaluate(f"$('local').value = {json.dumps(str(model_dir))}; $('load').click(); true")
        browser.wait_for(f"$('current').dataset.model === {json.dumps(str(model_dir))}")
        root = browser.send("DOM.getDocument")["root"]["nodeId"]
        file_input = browser.send("DOM.querySelector", nodeId=root, selector="#photo")["nodeId"]
        browser.send("DOM.setFileInputFiles", files=[str(photo)], nodeId=file_input)
        browser.wait_for("!$('result').hidden && $('overlay').complete && $('overlay').naturalWidth > 0")
        legend = browser.evaluate(
            "[...document.querySelectorAll('#legend li')].map(li => [li.dataset.name, "
            "li.querySelector('.share').textContent])"
        )
        size = browser.evaluate("[$('overlay').naturalWidth, $('overlay').naturalHeight]")
        download = browser.evaluate("$('download').href")
        shot = browser.send("Page.captureScreenshot", format="png")["data"]
        (tmp_path / "demo.png").write_bytes(base64.b64decode(shot))
    finally:
        browser.close()

    assert {name for name, _ in legend} == set(expected)
    for name, share in legend:
        assert share == (f"{100 * expected[name]:.1f}%" if expected[name] >= 0.0005 else "<0.1%")
    assert size == [labels.shape[1], labels.shape[0]]
    png = base64.b64decode(download.split(",", 1)[1])
    (tmp_path / "labels.png").write_bytes(png)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "labels.png")), labels)
    print("screenshot:", tmp_path / "demo.png")


def test_demo_routes_say_what_is_wrong(demo_server):
    url, _, _ = demo_server

    def post(path, body):
        request = urllib.request.Request(url + path, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    assert post("api/predict", b"\x89PNG") == (400, {"error": "pick a checkpoint first"})
    status, body = post("api/model", json.dumps({"name": "segformer-b9-nowhere"}).encode())
    assert status == 400 and "segformer-b9-nowhere" in body["error"]
    with urllib.request.urlopen(url + "api/models", timeout=30) as response:
        models = json.loads(response.read())
    assert models["current"] is None and "segformer-b0-ade" in models["checkpoints"]
