//! The gateway: `/{service}/rest...` goes to an instance of `{service}` with
//! the same method, the whole path and query, headers and body; the answer
//! comes back as it is.
//!
//! The host does the sending (instance choice, retries, timeouts, hop-by-hop
//! headers); this plugin only decides where a request goes and what a failure
//! means to the client.

use sparrow_plugin::services::call_service;
use sparrow_plugin::{CallError, Description, Guest, Request, Response};

struct Gateway;

impl Guest for Gateway {
    fn describe() -> Description {
        Description {
            name: "gateway".into(),
            // The gateway forwards to whatever service a path names.
            requires: vec!["*".into()],
        }
    }

    fn handle_request(request: Request) -> Response {
        let Some(service) = target_service(&request) else {
            return Response::text(404, "no service named: use /{service}/...");
        };
        let service = service.to_owned();
        match call_service(&service, &request) {
            Ok(response) => response,
            Err(CallError::NoInstance) => {
                Response::text(503, format!("no instance of service '{service}'"))
            }
            Err(CallError::NotAllowed) => Response::text(
                503,
                format!("service '{service}' is not reachable from the gateway"),
            ),
            Err(CallError::Unreachable(why)) => {
                Response::text(502, format!("service '{service}' failed: {why}"))
            }
            Err(CallError::Timeout) => {
                Response::text(504, format!("service '{service}' did not answer in time"))
            }
            Err(CallError::InvalidRequest(why)) => {
                Response::text(400, format!("cannot forward to '{service}': {why}"))
            }
        }
    }
}

/// The first path segment: `/visit/a?b=1` -> `visit`.
fn target_service(request: &Request) -> Option<&str> {
    let first = request
        .path_only()
        .trim_start_matches('/')
        .split('/')
        .next()?;
    (!first.is_empty()).then_some(first)
}

sparrow_plugin::export!(Gateway);
