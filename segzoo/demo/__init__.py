"""``segzoo demo``: a web page to try a checkpoint on your photos, served by the Python standard library.

Pick a checkpoint from the table (downloaded into the Hugging Face cache on first use, offline afterwards) or give a
local folder, weights file or exported ``.onnx`` file (run by :mod:`segzoo.runtime`, without PyTorch); upload a
photo; the page shows the overlay, a legend of the classes present with their share of the image, and a link to the
label PNG (class indices, with the palette as its colour table). The page loads nothing from the internet.

Why not Gradio: it would add a web framework, a bundled front end and their dependencies to an optional extra for
one form with an image, and its page fetches assets at run time. ``http.server`` serves the same page offline with
nothing to install; the predictions are ``segzoo.predict``'s (or the runtime's), drawn by
``segzoo.inference._visualize`` like ``segzoo predict``'s overlays.
"""

from segzoo.demo._server import DemoState, make_server, serve

__all__ = ["DemoState", "make_server", "serve"]
