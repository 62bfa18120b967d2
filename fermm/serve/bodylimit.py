"""A cap on the size of HTTP request bodies, for the app's server (``fermm.serve.ui.launch_options``).

Gradio caps file uploads (``max_file_size``) but not JSON bodies, which API clients may fill with images
inline as data: URLs; Gradio reads such a body into memory whole and keeps it in the session's state,
so a few huge requests could exhaust a small Space's memory. This ASGI middleware answers 413 instead.
"""
from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(HTTPException):
    """Raised while the app reads a chunked body: FastAPI turns it into a 413 answer where it parses bodies
    (Gradio's component_server route answers 400); the request is refused either way."""


class BodyLimit:
    """Refuse requests whose body is larger than ``max_bytes``: at once when Content-Length says so, else
    (chunked bodies) as soon as the bytes received pass the cap."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, 413, self._message())
        if not declared and scope["method"] == "POST" and scope["path"].endswith("/upload"):  # browsers declare it
            # Gradio's upload parser would leave partly written files behind if the cap stopped it midway
            return await self._refuse(send, 411, "Uploads must declare their size (Content-Length).")
        received, started = 0, False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge(413, self._message())
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:  # else the answer is under way: the connection just ends
                await self._refuse(send, 413, self._message())

    def _message(self) -> str:
        return f"The request is larger than this app accepts ({self.max_bytes / 2**20:.0f} MB). Send a smaller image."

    @staticmethod
    async def _refuse(send: Send, status: int, message: str) -> None:
        body = json.dumps({"detail": message}).encode()  # FastAPI's shape, as for the chunked case
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
