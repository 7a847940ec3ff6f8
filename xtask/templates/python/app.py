"""{{name}}: a Sparrow service. `GET /hello/{who}` answers a greeting.

Routes are matched on `route(request)`: the path without its query and
without the prefix a gateway adds, so that `/hello/bob` called directly and
`/{{name}}/hello/bob` through the gateway reach the same route.

componentize-py builds this module (`app`) into a component; the `wit_world`
package is generated from wit/ at build time.
"""

import wit_world
from wit_world.imports.types import Description, Header, Request, Response

# The name this service registers under: the gateway forwards /{{name}}/...
# to it.
NAME = "{{name}}"


def header(request: Request, name: str) -> str | None:
    """The value of the first header called `name` (any case)."""
    for h in request.headers:
        if h.name.lower() == name:
            return h.value
    return None


def route(request: Request) -> str:
    """The path without its query and without the gateway's prefix.

    Through the gateway the path is `/{{name}}/hello/bob` and the header
    `X-Forwarded-Prefix` is `/{{name}}`; called directly the path is
    `/hello/bob`. Both give `/hello/bob`.
    """
    path = request.path.split("?", 1)[0]
    prefix = (header(request, "x-forwarded-prefix") or "").strip().rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix):] or "/"
    return path


def text(status: int, body: str, headers: list[Header] | None = None) -> Response:
    """A plain-text response."""
    headers = [Header("content-type", "text/plain; charset=utf-8")] + (headers or [])
    return Response(status, headers, body.encode())


# componentize-py looks for a class of this name in the `app` module.
class WitWorld(wit_world.WitWorld):
    def describe(self) -> Description:
        # The second field lists the services this one calls
        # (wit_world.imports.services.call_service).
        return Description(NAME, [])

    def handle_request(self, request: Request) -> Response:
        path = route(request)
        segments = path.split("/")[1:]
        if len(segments) == 2 and segments[0] == "hello" and segments[1]:
            if request.method != "GET":
                return text(405, "only GET\n", [Header("allow", "GET")])
            return text(200, f"Hello, {segments[1]}! This is {NAME}.\n")
        return text(404, f"no route for {path}: try GET /hello/NAME\n")
