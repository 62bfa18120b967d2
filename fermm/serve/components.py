"""Gradio components the app needs beyond the stock ones: an image input that accepts files and inline
``data:`` URLs, and model choosers that only accept registry names."""
from __future__ import annotations

import base64
import binascii
import logging

import gradio as gr

from fermm.models import list_models

log = logging.getLogger(__name__)
MAX_UPLOAD_MB = 25  # per uploaded file; also the cap of an inline data: URL image


def user_error(message: str) -> gr.Error:
    """The error a person sees for a request that cannot be served (a bad file, a missing choice): one log line,
    no traceback (Gradio prints one for every gr.Error unless told not to; these are not bugs)."""
    log.info("request refused: %s", message)
    return gr.Error(message, print_exception=False)


class FileImage(gr.Image):
    """gr.Image that hands the raw upload (a path, or the bytes of an inline data: URL) to fermm instead of
    decoding it itself, so damaged or fake images reach :func:`fermm.faces.load_image` and get a clear
    message instead of a crash."""

    def get_block_name(self) -> str:
        return "image"  # render with gr.Image's front-end component

    def preprocess(self, payload) -> str | bytes | None:
        if payload is None:
            return None
        if payload.url and payload.url[:5].lower() == "data:":
            return data_url_bytes(payload.url)
        return payload.path


def data_url_bytes(url: str) -> bytes:
    """An image sent inline (an API client's data: URL) as bytes, decoded in memory: held to the upload cap,
    which such images bypass, and never written to disk (Gradio would save a copy outside its cleaned cache).
    Line-wrapped or unpadded base64 is accepted, as Gradio's own decoder accepts it."""
    head, _, body = url.partition(",")
    if not head.strip().lower().endswith(";base64"):
        raise user_error("This image cannot be used: only base64 data URLs are accepted.")
    body = "".join(body.split())
    if len(body) * 3 // 4 > MAX_UPLOAD_MB * 2**20:
        raise user_error(f"This image is larger than the {MAX_UPLOAD_MB} MB upload limit.")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        raise user_error("This image cannot be used: its data URL is not valid base64.") from None


class _RegistryChoices:
    """For model choosers: submitted names are checked against the model registry, not against the session's
    choices, since Refresh changes one session's choices and Gradio forgets old sessions' state (``SESSIONS``)."""

    kind = "image"

    def check(self, values: list) -> None:
        names = list_models(self.kind)
        unknown = [v for v in values if v not in names]
        if unknown:
            raise user_error(f"Unknown model {unknown[0]!r}: the {self.kind} models are {', '.join(names)}.")


class ModelBoxes(_RegistryChoices, gr.CheckboxGroup):
    """Image-model checkboxes that accept any registry model, offered or not."""

    def get_block_name(self) -> str:
        return "checkboxgroup"

    def preprocess(self, payload: list | None) -> list[str]:
        self.check(payload or [])
        return list(payload or [])


class ModelMenu(_RegistryChoices, gr.Dropdown):
    """A text-model dropdown that accepts any registry model, offered or not."""

    kind = "text"

    def get_block_name(self) -> str:
        return "dropdown"

    def preprocess(self, payload: str | None) -> str | None:
        self.check([payload] if payload is not None else [])
        return payload
