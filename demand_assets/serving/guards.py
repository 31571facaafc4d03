"""Pure ASGI middleware that answers before the app runs: the request-size limit, the optional
bearer token, and the header naming the models on every response (the guards' answers too).

They wrap the ASGI callables directly rather than FastAPI's request/response layer, so a body
is refused while it streams in: a declared Content-Length over the limit is answered 413
before a byte is read, and a chunked body is cut off at the first chunk past the limit,
before multipart parsing has spooled the rest to disk.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BearerToken", "BodySizeLimit", "ResponseHeaders", "send_error"]


async def send_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """A JSON error response {"error": message}, as the app's own errors are shaped."""
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class _TooLarge(Exception):
    """Raised into the app from receive() once the body passes the limit, to stop it reading."""


class BodySizeLimit:
    """413 for a request body over `max_bytes`: by its Content-Length up front, or by counting
    the chunks of a body sent without one (chunked transfer) as the app reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"rule 'upload size': the request body is larger than the limit of {self.max_bytes:,} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await send_error(send, 400, f"rule 'Content-Length is a byte count': got {declared[:40]!r}")
                return
            if int(declared) > self.max_bytes:
                await send_error(send, 413, self._message())
                return
        await self._streamed(scope, receive, send)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = answered = False

        async def counting_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started and not answered:
                        answered = True
                        await send_error(send, 413, self._message())
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:  # the 413 is out: whatever the interrupted app answers is dropped
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not answered:
                raise


class BearerToken:
    """401 unless the request carries `Authorization: Bearer <token>`, except the `open_routes`
    (method, path); the token is compared in constant time."""

    def __init__(self, app: ASGIApp, token: str, open_routes: frozenset[tuple[str, str]] = frozenset({("GET", "/health")})) -> None:
        if not token:
            raise ValueError("BearerToken needs a non-empty token")
        self.app = app
        self.token = token.encode()
        self.open_routes = open_routes

    def authorized(self, scope: Scope) -> bool:
        if (scope["method"], scope["path"]) in self.open_routes:
            return True
        scheme, _, presented = (_header(scope, b"authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.authorized(scope):
            await self.app(scope, receive, send)
            return
        await send_error(
            send,
            401,
            "rule 'bearer token': this service requires the header 'Authorization: Bearer <token>' with the service's token",
            {"WWW-Authenticate": "Bearer"},
        )


class ResponseHeaders:
    """Adds `headers()` to every HTTP response, including those the other guards send."""

    def __init__(self, app: ASGIApp, headers: Callable[[], dict[str, str]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers().items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
