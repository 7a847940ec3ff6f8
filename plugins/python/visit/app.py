"""The visit service again, in Python: every request counts one visit, writes
the new count through the log service and answers it as text.

It does what plugins/visit (Rust) does, under its own name `visit-py`, so
that the two can run side by side; the counter lives in the host's state
because each request runs in a fresh instance.

Built into plugins/visit-py.wasm by `cargo xtask build` (componentize-py);
the `wit_world` module is generated from wit/service.wit at build time.
"""

import sys

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, state
from wit_world.imports.types import Description, Header, Request, Response

COUNTER = "visits"


def text(status: int, body: str) -> Response:
    """A plain-text response."""
    headers = [Header("content-type", "text/plain; charset=utf-8")]
    return Response(status, headers, body.encode())


# componentize-py looks for a class of this name in the `app` module.
class WitWorld(wit_world.WitWorld):
    def describe(self) -> Description:
        return Description("visit-py", ["log"])

    def handle_request(self, request: Request) -> Response:
        # A WIT `result` error arrives as an `Err` exception.
        try:
            count = state.increment(COUNTER, 1)
        except Err as e:
            return text(500, f"cannot count the visit: {e.value}")
        try:
            log.log_println(str(count))
        except Err as e:
            print(f"log service println error: {e.value}", file=sys.stderr)
            return text(500, f"cannot log visit {count}: {e.value}")
        return text(200, str(count))
