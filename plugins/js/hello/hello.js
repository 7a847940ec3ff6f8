/**
 * The hello service, in JavaScript: greets whoever `?name=` names (the world
 * by default) and tells them their visitor number, which it gets by calling
 * the visit-py service (Python) through the host.
 *
 * It shows each kind of import: `call-service` (with its error variant),
 * `log-println`, and `state`. Built into plugins/hello-js.wasm by
 * `cargo xtask build` (jco componentize, StarlingMonkey engine).
 */

import { callService } from "sparrow:service/services@0.1.1";
import { logPrintln } from "sparrow:service/log@0.1.1";
import { increment } from "sparrow:service/state@0.1.1";

const COUNTER_SERVICE = "visit-py";

/** A plain-text response; a `list<u8>` body is a Uint8Array. */
function text(status, body) {
  return {
    status,
    headers: [{ name: "content-type", value: "text/plain; charset=utf-8" }],
    body: new TextEncoder().encode(body),
  };
}

/** The value of the query parameter `name`, decoded, or undefined. */
function query(path, name) {
  const at = path.indexOf("?");
  if (at < 0) return undefined;
  return new URLSearchParams(path.slice(at + 1)).get(name) ?? undefined;
}

/** What a `call-error` variant means to the client, as a response. */
function callFailed(service, error) {
  switch (error.tag) {
    case "no-instance":
      return text(503, `no instance of service '${service}'`);
    case "not-allowed":
      return text(503, `service '${service}' is not reachable from hello-js`);
    case "timeout":
      return text(504, `service '${service}' did not answer in time`);
    default: // unreachable, invalid-request: both carry a reason
      return text(502, `service '${service}' failed: ${error.val}`);
  }
}

export function describe() {
  return { name: "hello-js", requires: [COUNTER_SERVICE, "log"] };
}

export function handleRequest(request) {
  const who = query(request.path, "name") ?? "world";

  // A WIT `result` error is thrown; its value is the exception's `payload`.
  let answer;
  try {
    answer = callService(COUNTER_SERVICE, {
      method: "GET",
      path: "/",
      headers: [],
      body: new Uint8Array(),
    });
  } catch (e) {
    if (e.payload === undefined) throw e;
    return callFailed(COUNTER_SERVICE, e.payload);
  }
  const number = new TextDecoder().decode(answer.body);
  if (answer.status !== 200) {
    return text(502, `${COUNTER_SERVICE} answered ${answer.status}: ${number}`);
  }

  // `s64` is a BigInt in JavaScript, both ways.
  let greeted;
  try {
    greeted = increment("greetings", 1n);
  } catch (e) {
    return text(500, `cannot count the greeting: ${e.payload ?? e}`);
  }
  try {
    logPrintln(`greeted ${who} (greeting ${greeted})`);
  } catch (e) {
    console.error(`log service println error: ${e.payload ?? e}`);
  }
  return text(200, `Hello, ${who}! You are visitor ${number}.`);
}
