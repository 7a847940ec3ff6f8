//! {{name}}: a Sparrow service. `GET /hello/{who}` answers a greeting.
//!
//! Routes are matched on `request.route()`: the path without its query and
//! without the prefix a gateway adds, so that `/hello/bob` called directly
//! and `/{{name}}/hello/bob` through the gateway reach the same route.

use sparrow_plugin::{Description, Guest, Header, Request, Response};

/// The name this service registers under: the gateway forwards
/// `/{{name}}/...` to it.
const NAME: &str = "{{name}}";

struct Service;

impl Guest for Service {
    fn describe() -> Description {
        Description {
            name: NAME.into(),
            // The services this one calls with `services::call_service`.
            requires: vec![],
        }
    }

    fn handle_request(request: Request) -> Response {
        let route = request.route();
        let segments: Vec<&str> = route.split('/').skip(1).collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["hello", who]) if !who.is_empty() => {
                Response::text(200, format!("Hello, {who}! This is {NAME}.\n"))
            }
            (_, ["hello", who]) if !who.is_empty() => {
                let mut response = Response::text(405, "only GET\n");
                response.headers.push(Header {
                    name: "allow".into(),
                    value: "GET".into(),
                });
                response
            }
            _ => Response::text(404, format!("no route for {route}: try GET /hello/NAME\n")),
        }
    }
}

sparrow_plugin::export!(Service);
