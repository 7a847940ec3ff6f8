//! `log-println`: one line through an instance of the `log` service, as
//! `POST /log` with the line as body and this service's name as source,
//! carrying the request's trace context and hop count.

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::metrics::CallOutcome;
use crate::outbound::{Call, CallFailure};
use crate::plugin::bindings::sparrow::service::log::Host;
use crate::plugin::context::RequestCtx;

const LOG_SERVICE: &str = "log";

impl Host for RequestCtx {
    async fn log_println(&mut self, message: String) -> Result<(), String> {
        let sent = self.send_line(message).await;
        self.env.metrics.log_line(sent.is_ok());
        // Here rather than in each plugin: a lean plugin has no stderr, and
        // a line that did not reach the log should show somewhere.
        if let Err(why) = &sent {
            tracing::warn!(service = %self.env.name, "log-println failed: {why}");
        }
        sent
    }
}

impl RequestCtx {
    async fn send_line(&mut self, message: String) -> Result<(), String> {
        if !self.env.may_call(LOG_SERVICE) {
            self.env.metrics.call(LOG_SERVICE, CallOutcome::NotAllowed);
            return Err(format!(
                "service '{}' does not require '{LOG_SERVICE}'",
                self.env.name
            ));
        }
        let mut headers = HeaderMap::new();
        self.env
            .mark_call(LOG_SERVICE, self.trace.as_ref(), &mut headers)
            .map_err(|e| e.to_string())?;
        let call = Call {
            method: Method::POST,
            path: "/log".into(),
            headers,
            body: Bytes::from(message),
        };
        let answer = self.env.outbound.call(LOG_SERVICE, call).await;
        self.env.metrics.call(LOG_SERVICE, super::outcome(&answer));
        match answer {
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
