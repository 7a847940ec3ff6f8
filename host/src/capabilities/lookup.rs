//! `registry-get` (the `registry` interface of the WIT): a random live instance of a required service, from the
//! host's instance cache (kept current by the registry's notifications).

use crate::plugin::bindings::sparrow::service::registry::Host;
use crate::plugin::context::RequestCtx;

impl Host for RequestCtx {
    fn registry_get(&mut self, name: String) -> Option<String> {
        if !self.env.may_call(&name) {
            return None;
        }
        self.env.cache.pick(&name)
    }
}
