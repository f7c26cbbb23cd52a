"""A POST handler that does nothing: the aiohttp ceiling for ``POST /events``.

``python -m bench.null_server [PORT]`` (default: ``ORDERLY_HTTP_PORT``) serves ``POST /events``
(reads the body, answers 202 with a tiny JSON body) and ``GET /readyz``, run by the same
``orderly_platform.http.serve`` as the order service (same event loop, GC and server settings). What the
order service does beyond this (auth, CloudEvents parsing, the Redis append) is what a
benchmark comparing the two measures.
"""

from __future__ import annotations

import os
import sys

from aiohttp import web

from orderly_platform.http import serve

_ACCEPTED = b'{"accepted":true}'


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_ACCEPTED, status=202, content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/events", accept)
    app.router.add_get("/readyz", ready)
    return app


def main(argv: list[str]) -> None:
    port = int(argv[1]) if len(argv) > 1 else int(os.environ["ORDERLY_HTTP_PORT"])
    serve(create_app(), host="127.0.0.1", port=port)


if __name__ == "__main__":
    main(sys.argv)
