//! `call-service`: a request to another service, sent by the host, so that a
//! plugin never needs a socket and reaches only what it declared. The call
//! carries the request's trace context and hop count, whatever headers the
//! plugin set.

use bytes::Bytes;
use http::Method;

use crate::metrics::CallOutcome;
use crate::outbound::{Call, CallFailure, header_map};
use crate::plugin::bindings::sparrow::service::services::Host;
use crate::plugin::bindings::{CallError, Header, Request, Response};
use crate::plugin::context::RequestCtx;

impl Host for RequestCtx {
    async fn call_service(
        &mut self,
        name: String,
        request: Request,
    ) -> Result<Response, CallError> {
        if !self.env.may_call(&name) {
            self.env.metrics.call(&name, CallOutcome::NotAllowed);
            return Err(CallError::NotAllowed);
        }
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| CallError::InvalidRequest(format!("bad method '{}'", request.method)))?;
        if !request.path.starts_with('/') {
            return Err(CallError::InvalidRequest(format!(
                "path '{}' does not start with '/'",
                request.path
            )));
        }
        let mut headers = header_map(
            request
                .headers
                .iter()
                .map(|h| (h.name.as_str(), h.value.as_str())),
        )
        .map_err(|e| CallError::InvalidRequest(e.to_string()))?;
        // Who calls is the host's to say: a gateway must not pass on a
        // client's claim to be another service, nor a count of hops.
        self.env
            .mark_call(&name, self.trace.as_ref(), &mut headers)
            .map_err(|e| CallError::InvalidRequest(e.to_string()))?;
        let call = Call {
            method,
            path: request.path,
            headers,
            body: Bytes::from(request.body),
        };
        let answer = self.env.outbound.call(&name, call).await;
        self.env.metrics.call(&name, super::outcome(&answer));
        match answer {
            Ok(answer) => Ok(Response {
                status: answer.status,
                headers: answer
                    .headers
                    .iter()
                    .filter_map(|(name, value)| {
                        Some(Header {
                            name: name.as_str().to_owned(),
                            value: value.to_str().ok()?.to_owned(),
                        })
                    })
                    .collect(),
                body: answer.body.to_vec(),
            }),
            Err(CallFailure::NoInstance) => Err(CallError::NoInstance),
            Err(CallFailure::Timeout) => Err(CallError::Timeout),
            Err(CallFailure::Unreachable(why)) => Err(CallError::Unreachable(why)),
        }
    }
}
