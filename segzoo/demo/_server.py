"""The demo's HTTP server: a static page and three JSON routes (models, load a model, predict a photo)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segzoo._datasets import default_palette
from segzoo._errors import SegzooError
from segzoo.inference._visualize import overlay, save_label_png

MAX_UPLOAD_BYTES = 50 * 2**20


class DemoState:
    """The model the page uses (one at a time, shared by every request) and how to load another."""

    def __init__(self, model: str | None = None):
        self.lock = threading.Lock()
        self.name: str | None = None
        self.model = None
        self.local = [model] if model and _is_local(model) else []
        if model:
            self.load(model)

    def choices(self) -> dict[str, Any]:
        from segzoo.checkpoints._table import list_pretrained

        return {"current": self.name, "local": self.local, "checkpoints": list_pretrained()}

    def load(self, name: str) -> dict[str, Any]:
        """Load a checkpoint name, local folder or weights file (PyTorch), or an ``.onnx`` file (the runtime)."""
        with self.lock:
            if name.endswith(".onnx"):
                from segzoo.runtime import load

                model = load(name)
                names, palette = model.class_names, model.palette
            else:
                from segzoo import load

                model = load(name)
                cfg = model.pretrained_cfg or {}
                names, palette = cfg.get("class_names"), cfg.get("palette")
            num_classes = len(names) if names else getattr(model, "num_classes", 256)
            self.model, self.name = model, name
            self.class_names = list(names) if names else [f"class {i}" for i in range(num_classes)]
            self.palette = [tuple(map(int, c)) for c in (palette or default_palette(num_classes))]
            if _is_local(name) and name not in self.local:
                self.local.append(name)
        return {"current": name, "classes": len(self.class_names)}

    def predict(self, data: bytes) -> dict[str, Any]:
        """Labels, overlay and legend for an uploaded image file."""
        if self.model is None:
            raise ValueError("pick a checkpoint first")
        try:
            with Image.open(io.BytesIO(data)) as image:
                image = ImageOps.exif_transpose(image).convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read the uploaded file as an image: {err}") from err
        rgb = np.asarray(image)
        with self.lock:
            start = time.perf_counter()
            labels = self.model.predict(rgb)
            seconds = time.perf_counter() - start
            names, palette = self.class_names, self.palette
        counts = np.bincount(labels.ravel(), minlength=len(names))
        legend = [
            {
                "index": int(c),
                "name": names[c] if c < len(names) else f"class {c}",
                "color": "#" + bytes(palette[c % len(palette)]).hex(),
                "share": float(counts[c] / labels.size),
            }
            for c in np.argsort(-counts)
            if counts[c]
        ]
        label_png = io.BytesIO()
        save_label_png(labels, label_png, palette, len(names))
        return {
            "model": self.name,
            "size": list(labels.shape),
            "seconds": round(seconds, 3),
            "legend": legend,
            "overlay": _data_url(overlay(rgb, labels, palette, alpha=0.5), "PNG"),
            "labels_png": "data:image/png;base64," + base64.b64encode(label_png.getvalue()).decode(),
        }


def _is_local(name: str) -> bool:
    return Path(name).expanduser().exists()


def _data_url(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def _handler(state: DemoState) -> type[BaseHTTPRequestHandler]:
    page = resources.files("segzoo.demo").joinpath("page.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the address only
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: Any, status: int = HTTPStatus.OK) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif self.path == "/api/models":
                self._json(state.choices())
            else:
                self._json({"error": f"no page {self.path}"}, HTTPStatus.NOT_FOUND)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_UPLOAD_BYTES:
                self._json(
                    {"error": f"the upload is larger than {MAX_UPLOAD_BYTES >> 20} MB"},
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                )
                return
            body = self.rfile.read(length)
            try:
                if self.path == "/api/model":
                    self._json(state.load(json.loads(body)["name"]))
                elif self.path == "/api/predict":
                    self._json(state.predict(body))
                else:
                    self._json({"error": f"no route {self.path}"}, HTTPStatus.NOT_FOUND)
            except (SegzooError, ValueError, OSError, KeyError, ImportError) as err:  # the user's choice or file
                self._json({"error": str(err).strip("'\"")}, HTTPStatus.BAD_REQUEST)

    return Handler


def make_server(model: str | None = None, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """The demo's server, not yet serving (``server.serve_forever()``; port 0 picks a free one:
    ``server.server_address``)."""
    return ThreadingHTTPServer((host, port), _handler(DemoState(model)))


def serve(model: str | None = None, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the demo page until Ctrl-C."""
    server = make_server(model, host, port)
    address, used_port = server.server_address[:2]
    print(f"segzoo demo: open http://{address}:{used_port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
