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
//!
//! With `default-features = false` the SDK is `no_std`, for plugins that are
//! too: their components import no WASI interface, which makes each fresh
//! instance cheaper (see [`bare`] and docs/plugins.md, "Lean Rust
//! plugins").

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

#[cfg(all(target_arch = "wasm32", not(feature = "std")))]
pub mod bare;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

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
        // What needs `std` in the bindings only with the `std` feature.
        std_feature,
    });
}

pub use bindings::sparrow::service::types::{CallError, Header};
pub use bindings::sparrow::service::{files, log, registry, services, state};
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

    /// The path to route on: the path without its query and without the
    /// prefix a gateway put before it, so that one route table serves a
    /// plugin called directly and through the gateway.
    ///
    /// The gateway forwards `/greeter/hello/bob` whole, with
    /// `X-Forwarded-Prefix: /greeter`; called directly, the plugin gets
    /// `/hello/bob`. Both give the route `/hello/bob`. A prefix that does not
    /// start the path, segment by segment, is not removed.
    pub fn route(&self) -> &str {
        let path = self.path_only();
        let Some(prefix) = self.header("x-forwarded-prefix") else {
            return path;
        };
        let prefix = prefix.trim().trim_end_matches('/');
        if prefix.is_empty() {
            return path;
        }
        match path.strip_prefix(prefix) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => path,
        }
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

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::{Header, Request};

    fn request(path: &str, prefix: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            headers: prefix
                .map(|value| Header {
                    name: "X-Forwarded-Prefix".into(),
                    value: value.into(),
                })
                .into_iter()
                .collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn route_is_the_same_directly_and_behind_the_gateway() {
        let direct = request("/hello/bob?loud=1", None);
        let gatewayed = request("/greeter/hello/bob?loud=1", Some("/greeter"));
        assert_eq!(direct.route(), "/hello/bob");
        assert_eq!(gatewayed.route(), "/hello/bob");
        // The query is still there for `query`.
        assert_eq!(gatewayed.query("loud"), Some("1"));
    }

    #[test]
    fn route_of_the_prefix_alone_is_the_root() {
        assert_eq!(request("/greeter", Some("/greeter")).route(), "/");
        assert_eq!(request("/greeter/", Some("/greeter")).route(), "/");
        assert_eq!(request("/greeter?x=1", Some("/greeter")).route(), "/");
        assert_eq!(request("/greeter/a", Some("/greeter/")).route(), "/a");
    }

    #[test]
    fn a_prefix_that_does_not_start_the_path_is_left_alone() {
        // Not at a segment boundary.
        assert_eq!(
            request("/greeters/a", Some("/greeter")).route(),
            "/greeters/a"
        );
        // Not the path's prefix at all.
        assert_eq!(
            request("/hello/bob", Some("/greeter")).route(),
            "/hello/bob"
        );
        // Empty or root prefixes remove nothing.
        assert_eq!(request("/hello/bob", Some("")).route(), "/hello/bob");
        assert_eq!(request("/hello/bob", Some("/")).route(), "/hello/bob");
        assert_eq!(request("/", None).route(), "/");
    }
}
