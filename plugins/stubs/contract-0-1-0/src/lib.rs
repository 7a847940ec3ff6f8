//! Test stub: a plugin built against the contract as it was at 0.1.0 (its
//! WIT inlined here, as a plugin built then carries it), which counts with
//! `state.increment`. A host serving a later 0.1.x must run it unchanged.

#![allow(clippy::too_many_arguments)] // generated code

wit_bindgen::generate!({
    inline: "
        package sparrow:service@0.1.0;

        interface types {
            record header { name: string, value: string }
            record request { method: string, path: string, headers: list<header>, body: list<u8> }
            record response { status: u16, headers: list<header>, body: list<u8> }
            record description { name: string, requires: list<string> }
        }

        interface state {
            increment: func(key: string, delta: s64) -> result<s64, string>;
        }

        world service {
            import state;
            use types.{request, response, description};
            export describe: func() -> description;
            export handle-request: func(request: request) -> response;
        }
    ",
});

use sparrow::service::state;

struct Old;

impl Guest for Old {
    fn describe() -> Description {
        Description {
            name: "old-contract".into(),
            requires: Vec::new(),
        }
    }

    fn handle_request(_request: Request) -> Response {
        let (status, body) = match state::increment("hits", 1) {
            Ok(hits) => (200, hits.to_string()),
            Err(e) => (500, e),
        };
        Response {
            status,
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }
}

export!(Old);
