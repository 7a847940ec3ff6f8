//! `log-println`: one line through an instance of the `log` service, as
//! `POST /log` with the line as body and this service's name as source.

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::outbound::{Call, CallFailure, set_source};
use crate::plugin::bindings::sparrow::service::log::Host;
use crate::plugin::context::RequestCtx;

const LOG_SERVICE: &str = "log";

impl Host for RequestCtx {
    async fn log_println(&mut self, message: String) -> Result<(), String> {
        if !self.env.may_call(LOG_SERVICE) {
            return Err(format!(
                "service '{}' does not require '{LOG_SERVICE}'",
                self.env.name
            ));
        }
        let mut headers = HeaderMap::new();
        set_source(&mut headers, &self.env.name);
        let call = Call {
            method: Method::POST,
            path: "/log".into(),
            headers,
            body: Bytes::from(message),
        };
        match self.env.outbound.call(LOG_SERVICE, &call).await {
            Ok(answer) if answer.status == 200 => Ok(()),
            Ok(answer) => Err(format!(
                "the log service answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body).trim()
            )),
            Err(CallFailure::NoInstance) => Err("no instance of the log service is known".into()),
            Err(CallFailure::Timeout) => Err("the log service did not answer in time".into()),
            Err(CallFailure::Unreachable(why)) => Err(format!("the log service failed: {why}")),
        }
    }
}
