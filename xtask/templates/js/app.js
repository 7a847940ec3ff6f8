/**
 * {{name}}: a Sparrow service. `GET /hello/{who}` answers a greeting.
 *
 * Routes are matched on `route(request)`: the path without its query and
 * without the prefix a gateway adds, so that `/hello/bob` called directly
 * and `/{{name}}/hello/bob` through the gateway reach the same route.
 *
 * jco componentize builds this module into a component of the world
 * `service` in wit/; the host's imports are modules such as
 * "sparrow:service/state@0.1.1".
 */

/** The name this service registers under: the gateway forwards /{{name}}/... to it. */
const NAME = "{{name}}";

/** The value of the first header called `name` (any case), or undefined. */
function header(request, name) {
  return request.headers.find((h) => h.name.toLowerCase() === name)?.value;
}

/**
 * The path without its query and without the gateway's prefix. Through the
 * gateway the path is `/{{name}}/hello/bob` and the header
 * `X-Forwarded-Prefix` is `/{{name}}`; called directly the path is
 * `/hello/bob`. Both give `/hello/bob`.
 */
function route(request) {
  const path = request.path.split("?")[0];
  const prefix = (header(request, "x-forwarded-prefix") ?? "").trim().replace(/\/+$/, "");
  if (prefix && (path === prefix || path.startsWith(prefix + "/"))) {
    return path.slice(prefix.length) || "/";
  }
  return path;
}

/** A plain-text response; a `list<u8>` body is a Uint8Array. */
function text(status, body, headers = []) {
  return {
    status,
    headers: [{ name: "content-type", value: "text/plain; charset=utf-8" }, ...headers],
    body: new TextEncoder().encode(body),
  };
}

export function describe() {
  // `requires` lists the services this one calls (callService).
  return { name: NAME, requires: [] };
}

export function handleRequest(request) {
  const path = route(request);
  const segments = path.split("/").slice(1);
  if (segments.length === 2 && segments[0] === "hello" && segments[1]) {
    if (request.method !== "GET") {
      return text(405, "only GET\n", [{ name: "allow", value: "GET" }]);
    }
    return text(200, `Hello, ${segments[1]}! This is ${NAME}.\n`);
  }
  return text(404, `no route for ${path}: try GET /hello/NAME\n`);
}
