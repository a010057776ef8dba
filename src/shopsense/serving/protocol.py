"""The HTTP protocol the workers speak: uvicorn's httptools one, with a cap
on a request's head.

httptools has no limit on the request line and headers, and it gathers a
long head in quadratic time: an 8 MB header held a worker for 150 ms, a
32 MB one for 2.4 s, before the ASGI middleware (``limits``) could count
anything. Here the bytes of a head are counted as they arrive, and past
``MAX_HEAD_BYTES`` the connection gets a 431 and nothing more is parsed
(what the client still sends is dropped unread, as nginx's lingering close
does, up to ``LINGER_BYTES`` or ``LINGER_SECONDS``). The middleware's finer
limits (the number of headers, their total size) still apply to heads under
the cap.
"""

from __future__ import annotations

import asyncio
import json
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024 * 1024
_BODY = json.dumps({"detail": f"request head over {MAX_HEAD_BYTES} bytes"}).encode()
REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


class HeadLimitedHttpTools(HttpToolsProtocol):
    """``HttpToolsProtocol`` refusing a request head over ``MAX_HEAD_BYTES``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._refused_at: float | None = None
        self._lingered = 0

    def data_received(self, data: bytes) -> None:
        """While a head is arriving, it is parsed a slice at a time, so that
        its size is known before more of it is parsed."""
        if self._refused_at is not None:
            self._linger(len(data))
            return
        while data and self._in_head:
            room = MAX_HEAD_BYTES - self._head_bytes
            if room <= 0:
                self._refuse()
                return
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)
            if self.transport.is_closing():
                return
        if data:
            super().data_received(data)

    def _refuse(self) -> None:
        """Answer 431 and stop sending, then drop what the client still sends
        for a moment before closing: closing at once, with its bytes unread,
        would reset the connection and lose the answer on the way."""
        self.transport.write(REFUSAL)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._refused_at = time.monotonic()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)

    def _linger(self, n: int) -> None:
        self._lingered += n
        if self._lingered > LINGER_BYTES or time.monotonic() - self._refused_at > LINGER_SECONDS:
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
