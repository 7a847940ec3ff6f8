/**
 * A standard wasi:http/proxy component in JavaScript, built with jco
 * (componentize-js): nothing in it knows Sparrow, and `wasmtime serve` runs
 * the same file. Sparrow runs it with
 * `host --plugin plugins/hello-http-js.wasm --name hello-js-http`.
 *
 * GET /hello/{who} answers a greeting with `x-hello: wasi:http/proxy`; any
 * other path 404. Behind the gateway the path keeps the service's prefix,
 * which `x-forwarded-prefix` names. The response is set first, then its
 * body is written: the host streams it to the client as it comes.
 *
 * It implements `wasi:http/incoming-handler` itself, with the resources of
 * `wasi:http/types`, rather than with the engine's `fetch` event: the
 * engine's own `fetch` support is built for WASI 0.2.10, and this targets
 * the WASI the host links (0.2.12, wit/deps, copied at build time).
 *
 * Built into plugins/hello-http-js.wasm by `cargo xtask build`.
 */

import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.12";

/** One write of a wasi:io output stream takes at most 4096 bytes. */
const CHUNK = 4096;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const incomingHandler = {
  handle(request, responseOut) {
    let path = (request.pathWithQuery() ?? "/").split("?")[0];
    const prefix = header(request, "x-forwarded-prefix");
    if (prefix && path.startsWith(prefix + "/")) {
      path = path.slice(prefix.length);
    }
    const [status, text] = path.startsWith("/hello/")
      ? [200, `Hello, ${path.slice("/hello/".length)}! (JavaScript)\n`]
      : [404, "no such page\n"];
    const headers = Fields.fromList([
      ["content-type", encoder.encode("text/plain; charset=utf-8")],
      ["x-hello", encoder.encode("wasi:http/proxy")],
    ]);
    const response = new OutgoingResponse(headers);
    response.setStatusCode(status);
    const body = response.body();
    ResponseOutparam.set(responseOut, { tag: "ok", val: response });
    const data = encoder.encode(text);
    const stream = body.write();
    for (let at = 0; at < data.length; at += CHUNK) {
      stream.blockingWriteAndFlush(data.subarray(at, at + CHUNK));
    }
    // The stream is a child of the body: it goes before the body finishes.
    stream[Symbol.dispose]();
    OutgoingBody.finish(body, undefined);
  },
};

/** The first value of header `name` of `request`, or "". */
function header(request, name) {
  const values = request.headers().get(name);
  return values.length > 0 ? decoder.decode(values[0]) : "";
}
