"""A standard wasi:http/proxy component in Python, built with componentize-py:
nothing in it knows Sparrow, and `wasmtime serve` runs the same file. Sparrow
runs it with `host --plugin plugins/hello-http-py.wasm --name hello-py`.

GET /hello/{who} answers a greeting with `x-hello: wasi:http/proxy`; any
other path 404. The response is sent first, then its body is written: the
host streams it to the client as it comes.

Built into plugins/hello-http-py.wasm by `cargo xtask build`; the
`wit_world` module is generated from wit/ (WASI 0.2.12's own WIT) at build
time.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# One write of a wasi:io output stream takes at most 4096 bytes.
CHUNK = 4096


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "/").split("?", 1)[0]
        prefix = _header(request, "x-forwarded-prefix")
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix):]
        if path.startswith("/hello/"):
            status, text = 200, f"Hello, {path[len('/hello/'):]}! (Python)\n"
        else:
            status, text = 404, "no such page\n"
        headers = Fields.from_list(
            [
                ("content-type", b"text/plain; charset=utf-8"),
                ("x-hello", b"wasi:http/proxy"),
            ]
        )
        response = OutgoingResponse(headers)
        response.set_status_code(status)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        data = text.encode()
        with body.write() as stream:
            for at in range(0, len(data), CHUNK):
                stream.blocking_write_and_flush(data[at : at + CHUNK])
        OutgoingBody.finish(body, None)


def _header(request: IncomingRequest, name: str) -> str:
    values = request.headers().get(name)
    return values[0].decode() if values else ""
