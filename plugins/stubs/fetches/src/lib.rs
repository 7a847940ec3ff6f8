//! Test stub: a `sparrow:service` plugin that sends an HTTP request itself,
//! through `wasi:http`, instead of asking the host with `call-service`. Its
//! component imports `wasi:http/outgoing-handler`, which the host does not
//! give a `sparrow:service` plugin: it must refuse it, naming the imports
//! and how to do without them.

use sparrow_plugin::{Description, Guest, Request, Response};
use wstd::http::{Client, Request as HttpRequest};

struct Fetches;

impl Guest for Fetches {
    fn describe() -> Description {
        Description {
            name: "fetches".into(),
            requires: Vec::new(),
        }
    }

    fn handle_request(request: Request) -> Response {
        // Never reached: the host refuses the component before any request.
        let status = wstd::runtime::block_on(async {
            let outgoing = HttpRequest::get(format!("http://127.0.0.1:9{}", request.path))
                .body(())
                .expect("a valid request");
            Client::new()
                .send(outgoing)
                .await
                .map_or(502, |answer| answer.status().as_u16())
        });
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

sparrow_plugin::export!(Fetches);
