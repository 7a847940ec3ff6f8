//! Rust bindings of the `sparrow:service` world, shared by every Rust plugin.
//!
//! A plugin implements [`Guest`] and exports it:
//!
//! ```ignore
//! use sparrow_plugin::{Description, Guest, Request, Response};
//!
//! struct Hello;
//!
//! impl Guest for Hello {
//!     fn describe() -> Description {
//!         Description { name: "hello".into(), requires: vec![] }
//!     }
//!     fn handle_request(_: Request) -> Response {
//!         Response::text(200, "hello")
//!     }
//! }
//!
//! sparrow_plugin::export!(Hello);
//! ```
//!
//! Bindings live here, once, so that the plugins share one set of types and
//! helpers instead of generating their own.

/// The generated bindings. Kept in a module of their own because a crate-root
/// `generate!` with an exported macro defines that macro twice.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod bindings {
    wit_bindgen::generate!({
        world: "service",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "sparrow_plugin::bindings",
    });
}

pub use bindings::sparrow::service::types::{CallError, Header};
pub use bindings::sparrow::service::{log, registry, services, state};
pub use bindings::{Description, Guest, Request, Response, export};

impl Request {
    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The path without its query: `/visit/a?b=1` -> `/visit/a`.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// The value of the query parameter `name`, undecoded.
    pub fn query(&self, name: &str) -> Option<&str> {
        let (_, query) = self.path.split_once('?')?;
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

impl Response {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            headers: vec![Header {
                name: "content-type".into(),
                value: "text/plain; charset=utf-8".into(),
            }],
            body: body.into().into_bytes(),
        }
    }

    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}
