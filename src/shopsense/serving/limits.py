"""What a client may send and how often: the ASGI middleware in front of the
service, and the shapes of the refusals it answers.

It runs before FastAPI sees a request, so a hostile one costs the worker
milliseconds, not the seconds FastAPI took to validate it and echo it back:

- **rate**: a token bucket per client address (429 with ``Retry-After``);
- **headers**: at most ``Limits.headers`` of them and ``Limits.header_bytes``
  in all (431). uvicorn's httptools parser has no limit of its own, so the
  head arrives whole and is counted here;
- **body**: read as it streams and refused (413) as soon as it passes
  ``Limits.body_bytes``, chunked or not, before the rest arrives;
- **JSON**: a body that says it is JSON (the bodies FastAPI parses) must be
  UTF-8 JSON without ``NaN``, ``Infinity`` or a lone surrogate
  (422 naming where it broke). A top-level list longer than the batch cap is
  refused (422) at the entry past the cap, before the rest is parsed;
- **errors**: an unhandled exception is logged and answered with a JSON 500,
  and counted in ``/metrics`` like any answer;
- **storefront**: its pages get a Content-Security-Policy and frame headers.

FastAPI parses the body again after this check (its own ``json.loads``): a
millisecond for a batch of 1,000 events, 20 ms for a 1 MiB body of tiny
nested objects (which then fails validation at once).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from email.message import Message
from ipaddress import ip_address, ip_network
from itertools import islice
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shopsense.serving.metrics import Metrics

LOG = logging.getLogger("shopsense.serving")
Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_ERRORS = 20
EXCERPT_CHARS = 120
BURST_SECONDS = 2.0
UNLIMITED_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})
POSSIBLE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's four
STOREFRONT_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
]


@dataclass(frozen=True)
class Limits:
    """The limits of one service. ``rate`` is requests a second per client
    address for the whole service; each of ``processes`` workers keeps its own
    buckets and allows its share (``rate / processes``, and a bucket of
    ``BURST_SECONDS`` of it). The kernel spreads a client's connections over
    the workers, so together they allow about ``rate``; a client on one
    keep-alive connection meets one worker and gets its share only. Sharing
    the buckets in the state store would cost a round trip a request.

    Addresses in ``exempt`` (loopback by default: probes, the serving
    benchmark, a local proxy) are not limited; uvicorn takes the client from
    ``X-Forwarded-For`` when the proxy on loopback sends one, so clients behind
    it are limited one by one. A client with no IP address (an in-process test
    client) is not limited either. ``rate=0`` turns the limit off."""

    body_bytes: int = 1 << 20
    header_bytes: int = 16 << 10
    headers: int = 100
    rate: float = 100.0
    exempt: tuple[str, ...] = ("127.0.0.0/8", "::1")
    processes: int = 1

    @classmethod
    def from_environment(cls) -> Limits:
        """``SHOPSENSE_RATE_LIMIT``, ``SHOPSENSE_RATE_LIMIT_EXEMPT`` (comma-separated
        networks) and ``SHOPSENSE_WORKERS``, each defaulting to the above."""
        exempt = listed("SHOPSENSE_RATE_LIMIT_EXEMPT")
        return cls(
            rate=float(os.environ.get("SHOPSENSE_RATE_LIMIT", cls.rate)),
            exempt=cls.exempt if exempt is None else exempt,
            processes=int(os.environ.get("SHOPSENSE_WORKERS", 1)),
        )


def listed(variable: str) -> tuple[str, ...] | None:
    """A comma-separated environment variable, or None when it is not set."""
    value = os.environ.get(variable)
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


# ----------------------------------------------------------------- answers
class Refusal(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Invalid(BaseModel):
    """A 422: what is wrong and where, at most ``MAX_ERRORS`` errors; the input
    itself is never echoed."""

    detail: list[FieldError]


def declared(status: int, description: str, retry: bool = False) -> dict[int, dict[str, Any]]:
    """A ``responses=`` entry for a refusal with a ``detail`` message (and a
    ``Retry-After`` header with ``retry``)."""
    answer: dict[str, Any] = {"model": Refusal, "description": description}
    if retry:
        answer["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        }
    return {status: answer}


ANY_ROUTE: dict[int | str, dict[str, Any]] = {
    **declared(413, "The body is over 1 MiB."),
    422: {"model": Invalid, "description": "Invalid input (query, path or body), by location."},
    **declared(429, "Too many requests from this client: wait Retry-After seconds.", retry=True),
    **declared(431, "Too many request headers, or too long."),
    **declared(503, "The state store is unreachable: retry after Retry-After seconds.", True),
}
"""What any route may answer besides its own responses (FastAPI's ``responses=``)."""


class Refused(Exception):
    """A request the middleware answers itself."""

    def __init__(self, status: int, detail: str | list[dict[str, Any]], retry_after: int = 0):
        super().__init__(status, detail)
        self.status, self.detail, self.retry_after = status, detail, retry_after

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return JSONResponse({"detail": self.detail}, status_code=self.status, headers=headers)


def _invalid_body(message: str, kind: str = "json_invalid") -> Refused:
    return Refused(422, [{"loc": ["body"], "msg": message, "type": kind}])


def _excerpt(value: Any) -> Any:
    return value[:EXCERPT_CHARS] if isinstance(value, str) else value


async def short_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422 echoes each error's ``input``: 900 KB of ``{}`` came
    back as 83 MB. This one gives location, message and type of the first
    ``MAX_ERRORS`` errors, each string cut to an excerpt."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [_excerpt(part) for part in error["loc"]],
            "msg": _excerpt(error["msg"]),
            "type": error["type"],
        }
        for error in islice(exc.errors(), MAX_ERRORS)
    ]
    return JSONResponse({"detail": errors}, status_code=422)


# ----------------------------------------------------------------- JSON
def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


STRICT = json.JSONDecoder(parse_constant=_no_constant)


def strict_json(body: bytes, batch: int) -> Any:
    """The body as JSON, or ``Refused`` (422). Strict UTF-8 (Python's ``json``
    lets UTF-8-encoded surrogates through), no ``NaN``/``Infinity`` (not JSON,
    and a 422 echoing one could not be rendered), no lone ``\\ud800``-style
    escapes (a string that cannot be stored or answered), and a top-level list
    of at most ``batch`` entries."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _invalid_body(f"the body is not UTF-8 (byte {e.start})") from None
    try:
        value = _decode(text, batch)
    except json.JSONDecodeError as e:
        raise _invalid_body(f"invalid JSON: {e.msg} at character {e.pos}") from None
    except ValueError as e:  # NaN, Infinity, -Infinity
        raise _invalid_body(str(e)) from None
    except RecursionError:
        raise _invalid_body("the JSON is nested too deeply") from None
    if POSSIBLE_SURROGATE.search(text):  # rare: only then check the decoded strings
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid_body("a string holds a lone surrogate (\\ud800-\\udfff)") from None
    return value


def _decode(text: str, batch: int) -> Any:
    """``STRICT.decode(text)``, but a top-level list is read entry by entry and
    refused at entry ``batch + 1``: 900 KB of ``{}`` is 300,000 objects to
    build (30 ms of the event loop) where 1,001 tell the answer."""
    start = WHITESPACE.match(text).end()
    if not text.startswith("[", start):
        return STRICT.decode(text)
    at = WHITESPACE.match(text, start + 1).end()
    if text.startswith("]", at):  # empty: nothing to count
        return STRICT.decode(text)
    entries: list[Any] = []
    more = True
    while more:
        try:
            entry, at = STRICT.scan_once(text, at)
        except StopIteration as e:
            raise json.JSONDecodeError("Expecting value", text, e.value) from None
        entries.append(entry)
        if len(entries) > batch:
            raise _invalid_body(f"at most {batch} entries in one request", "too_long")
        at = WHITESPACE.match(text, at).end()
        more = text.startswith(",", at)
        if not more and not text.startswith("]", at):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
        at = WHITESPACE.match(text, at + 1).end()
    if at != len(text):
        raise json.JSONDecodeError("Extra data", text, at)
    return entries


def _says_json(content_type: bytes | None) -> bool:
    """Whether FastAPI parses the body as JSON: ``application/json`` or
    ``application/*+json`` (without a content type it validates the bytes)."""
    if content_type is None:
        return False
    message = Message()
    message["content-type"] = content_type.decode("latin-1")
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


# ----------------------------------------------------------------- rate
class TokenBuckets:
    """One token bucket per client, in this process: ``rate`` tokens a second,
    holding at most ``size``. The least recently seen clients are dropped past
    ``clients`` (a dropped client starts again with a full bucket)."""

    def __init__(self, rate: float, size: float, clients: int = 100_000) -> None:
        self.rate, self.size, self.clients = rate, size, clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait(self, client: str, now: float) -> float:
        """Take a token: 0 when there was one, else the seconds until there is."""
        tokens, then = self._buckets.pop(client, (self.size, now))
        tokens = min(self.size, tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
        if len(self._buckets) > self.clients:
            del self._buckets[next(iter(self._buckets))]
        return wait


# ----------------------------------------------------------------- middleware
class LimitsAndMetrics:
    """Enforces ``Limits`` (above), refuses a JSON list over ``batch`` entries,
    and times every request for ``/metrics``. Plain ASGI: Starlette's
    ``BaseHTTPMiddleware`` costs about a millisecond a request."""

    def __init__(self, app: ASGIApp, metrics: Metrics, limits: Limits, batch: int) -> None:
        self.app, self.metrics, self.limits, self.batch = app, metrics, limits, batch
        share = limits.rate / max(1, limits.processes)
        self.buckets = TokenBuckets(share, max(1.0, share * BURST_SECONDS)) if share > 0 else None
        self.exempt = [ip_network(n, strict=False) for n in limits.exempt]
        self._limited = functools.lru_cache(maxsize=1 << 16)(self._is_limited)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        page = scope["path"] == "/" or scope["path"].startswith("/static/")

        async def send_and_note(message: ASGIMessage) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if page:
                    message["headers"] = [*message.get("headers", ()), *STOREFRONT_HEADERS]
            await send(message)

        try:
            self._check_head(scope)
            body = await self._body(scope, receive)
            if body is None:  # the client left while sending it
                return
            await self.app(scope, _replay(body, receive), send_and_note)
        except Refused as refused:
            await refused.response()(scope, receive, send_and_note)
        except Exception:
            LOG.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            if status:  # the answer had begun: all the server can do is close
                status = 500
                raise
            await JSONResponse({"detail": "internal server error"}, 500)(
                scope, receive, send_and_note
            )
        finally:
            if status:
                endpoint = getattr(scope.get("route"), "path", "unmatched")
                seconds = time.perf_counter() - started
                self.metrics.observe(endpoint, scope["method"], status, seconds)

    def _check_head(self, scope: Scope) -> None:
        """Rate (429), then the headers (431)."""
        if self.buckets is not None and scope["path"] not in UNLIMITED_PATHS:
            client = (scope.get("client") or ("",))[0]
            if self._limited(client):
                wait = self.buckets.wait(client, time.monotonic())
                if wait:
                    raise Refused(429, "too many requests: slow down", math.ceil(wait))
        headers = scope["headers"]
        if len(headers) > self.limits.headers:
            raise Refused(431, f"over {self.limits.headers} request headers")
        if sum(len(name) + len(value) for name, value in headers) > self.limits.header_bytes:
            raise Refused(431, f"request headers over {self.limits.header_bytes} bytes")

    def _is_limited(self, host: str) -> bool:
        """Whether ``host`` is an IP address outside the exempt networks
        (cached per address in ``__init__``: parsing one costs 5 µs)."""
        try:
            address = ip_address(host)
        except ValueError:
            return False
        return not any(address in network for network in self.exempt)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, read up to the limit (413 the moment it passes);
        refused when it says it is JSON and is not strict JSON."""
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if length in (b"", b"0") and b"transfer-encoding" not in headers:
            return b""
        limit = self.limits.body_bytes
        over = Refused(413, f"request body over {limit} bytes")
        if length.isdigit() and int(length) > limit:
            raise over
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise over
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _says_json(headers.get(b"content-type")):
            strict_json(body, self.batch)
        return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the body read already, then the client's own
    messages (a disconnect)."""
    pending = True

    async def replayed() -> ASGIMessage:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
