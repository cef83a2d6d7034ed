"""Images drawn in the terminal, where the terminal can (``textual-image``).

Which way a terminal draws images (Sixel, the Kitty graphics protocol, or coloured half cells)
can only be asked before Textual takes over the terminal: :func:`prepare` runs at start, when
the output is a terminal and previews are on. Without it (previews off, not a terminal, the
library missing) :func:`preview` gives a placeholder that says where the file is.
"""

from __future__ import annotations

import logging
from pathlib import Path

from textual.widget import Widget
from textual.widgets import Static

log = logging.getLogger("tui_chat.ui")

PREVIEWABLE = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
"""Types the preview decodes (Pillow); others are only saved."""

_image_widget: type[Widget] | None = None


def prepare(enabled: bool = True) -> str | None:
    """Ask the terminal how it draws images (call before the app starts); the way, or None."""
    global _image_widget
    if not enabled:
        return None
    try:
        from textual_image.widget import Image
    except Exception as exc:  # a missing or broken optional part must not stop the app
        log.info("no image previews: %s", exc.__class__.__name__)
        return None
    _image_widget = Image
    return way()


def way() -> str:
    """How previews are drawn now, for the help and the doctor: "none" until :func:`prepare`."""
    if _image_widget is None:
        return "none"
    from textual_image import renderable

    return renderable.Image.__module__.rsplit(".", 1)[-1]  # sixel, tgp, halfcell or unicode


def is_previewable(media_type: str) -> bool:
    return media_type.split(";", 1)[0].strip().lower() in PREVIEWABLE


def preview(path: Path, *, id: str | None = None) -> Widget:
    """The image at ``path`` drawn in the terminal, or a placeholder when it cannot be."""
    if _image_widget is not None:
        try:
            from PIL import Image as PillowImage

            with PillowImage.open(path) as image:
                image.verify()  # a damaged or hostile file is a placeholder, not a crash in the renderer
            return _image_widget(path, id=id)
        except Exception as exc:
            log.info("image not previewed: %s", exc.__class__.__name__)
            return Static("This file could not be read as an image.", id=id, markup=False, classes="preview-placeholder")
    return Static(
        "This terminal shows no images here (or previews are off): open it to see it.",
        id=id, markup=False, classes="preview-placeholder",
    )  # fmt: skip
