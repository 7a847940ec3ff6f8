//! `state`: the host-kept key-value store, shared by every request of this
//! host and kept across plugin swaps.

use crate::metrics::StateOp;
use crate::plugin::bindings::sparrow::service::state::Host;
use crate::plugin::context::RequestCtx;

impl Host for RequestCtx {
    fn get(&mut self, key: String) -> Option<String> {
        self.env.metrics.state_op(StateOp::Get);
        self.env.kv.get(&key)
    }

    /// `set` has no error in the WIT contract: a change beyond the limits is
    /// a trap (the request fails with 500 and a message naming the limit),
    /// never a change silently dropped.
    fn set(&mut self, key: String, value: String) -> wasmtime::Result<()> {
        self.env.metrics.state_op(StateOp::Set);
        self.env
            .kv
            .set(key, value)
            .map_err(|e| wasmtime::format_err!("state.set refused: {e}"))
    }

    fn increment(&mut self, key: String, delta: i64) -> Result<i64, String> {
        self.env.metrics.state_op(StateOp::Increment);
        self.env.kv.increment(&key, delta)
    }
}
