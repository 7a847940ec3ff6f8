//! The second kind of plugin: a standard component of the `wasi:http/proxy`
//! world, served through `wasmtime-wasi-http`.
//!
//! Every request gets a fresh instance in the same sandbox as a
//! `sparrow:service` plugin (its store, memory limit, epoch deadline and
//! instance slot come from `sandbox` and `engine`), and the same failure
//! answers: a trap before the response is 500, the request timeout 504.
//! Bodies stream both ways: the request body is read by the component as it
//! arrives (bounded by `--max-body`), and the response body goes to the
//! client as the component writes it, while the instance keeps running in a
//! task of its own, holding its slot until it returns or its deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::{Error as HttpError, WasiBody, WasiHttpView};

use super::context::{RequestCtx, ServiceEnv};
use super::engine::PluginEngine;
use super::sandbox::{Failure, classify};
use crate::trace::Hop;

/// The export that makes a component a `wasi:http/proxy` one (any 0.2.x).
pub const HANDLER_EXPORT: &str = "wasi:http/incoming-handler@0.2";

/// The world, for messages.
pub const WORLD: &str = "wasi:http/proxy@0.2";

/// One request for a standard component, with what its outgoing calls
/// carry.
pub struct HttpCall {
    pub request: http::Request<WasiBody>,
    pub trace: Hop,
}

/// A linked standard component.
pub(super) struct ProxyPlugin {
    pub(super) pre: ProxyPre<RequestCtx>,
}

/// A request body as a component reads it: the client's, cut off with an
/// error past `max` bytes.
pub fn limited_body<B>(body: B, max: usize) -> WasiBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    http_body_util::Limited::new(body, max)
        .map_err(move |e| {
            if e.is::<LengthLimitError>() {
                HttpError::HttpRequestBodySize(Some(max as u64))
            } else {
                HttpError::InternalError(Some(format!("reading the request body: {e}")))
            }
        })
        .boxed_unsync()
}

impl ProxyPlugin {
    /// Runs `call` in a fresh instance once it has a slot; answers as soon
    /// as the component has set its response, whose body then streams.
    pub(super) async fn run(
        &self,
        engine: &PluginEngine,
        env: Arc<ServiceEnv>,
        call: HttpCall,
    ) -> Result<http::Response<HyperOutgoingBody>, Failure> {
        let HttpCall { request, trace } = call;
        let slot = engine.slot().await?;
        let in_use = env.metrics.in_use();
        let deadline = tokio::time::Instant::now() + engine.settings.request_timeout;
        let created = Instant::now();
        let mut store = engine.new_store(env);
        let data = store.data_mut();
        data.deadline = deadline.into_std();
        data.outgoing.trace = Some(trace);
        store.set_epoch_deadline(1);

        let (answer_tx, answer) = oneshot::channel();
        let mut http = store.data_mut().http();
        let incoming = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| Failure::Setup(format!("{e:#}")))?;
        let outparam = http
            .new_response_outparam(answer_tx)
            .map_err(|e| Failure::Setup(format!("{e:#}")))?;

        // Once the response is out, a failure can only cut its body short:
        // the task logs it, nobody else will see it.
        let answered = Arc::new(AtomicU8::new(PENDING));
        let instance = Instance {
            pre: self.pre.clone(),
            store,
            deadline,
            created,
            answered: answered.clone(),
        };
        let held = (slot, in_use);
        let task = tokio::spawn(
            async move {
                let _held = held;
                instance.handle(incoming, outparam).await
            }
            .in_current_span(),
        );
        answer_of(answer, task, &answered).await
    }
}

/// A fresh instance about to handle one request, in a task of its own.
struct Instance {
    pre: ProxyPre<RequestCtx>,
    store: Store<RequestCtx>,
    deadline: tokio::time::Instant,
    created: Instant,
    /// Who saw the end first: the server taking the response
    /// ([`ANSWERED`]), or this instance failing ([`FAILED`]).
    answered: Arc<AtomicU8>,
}

/// Neither the response has been taken by the server nor has the instance
/// failed.
const PENDING: u8 = 0;
/// The server took the response: a failure now only cuts its body short.
const ANSWERED: u8 = 1;
/// The instance failed before the server took a response it may have set:
/// the server answers the failure instead.
const FAILED: u8 = 2;

impl Instance {
    /// Runs the component's handler until it returns, traps or passes the
    /// deadline.
    async fn handle(
        mut self,
        incoming: Resource<HostIncomingRequest>,
        outparam: Resource<HostResponseOutparam>,
    ) -> Result<(), Failure> {
        let store = &mut self.store;
        let call = async {
            let proxy = self.pre.instantiate_async(&mut *store).await?;
            store
                .data()
                .env
                .metrics
                .instance_setup(self.created.elapsed());
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, incoming, outparam)
                .await
        };
        // The epoch deadline stops code that spins; this timer stops a
        // component waiting on the host (a slow outgoing call).
        let ended = match tokio::time::timeout_at(self.deadline, call).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(classify(error)),
            Err(_elapsed) => Err(Failure::Timeout),
        };
        if let Err(failure) = &ended
            && self
                .answered
                .compare_exchange(PENDING, FAILED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            let service = &*self.store.data().env.name;
            tracing::error!(
                service,
                "component failed while sending its body: {failure}"
            );
        }
        ended
    }
}

/// The response as soon as the component set it, or why there is none:
/// when the component dropped its outparam, or failed before the response
/// it set was taken (a body cut off at `--max-body` as it streamed in),
/// how its task ended says why.
async fn answer_of(
    answer: oneshot::Receiver<Result<http::Response<HyperOutgoingBody>, ErrorCode>>,
    task: JoinHandle<Result<(), Failure>>,
    answered: &AtomicU8,
) -> Result<http::Response<HyperOutgoingBody>, Failure> {
    match answer.await {
        Ok(Ok(response))
            if answered
                .compare_exchange(PENDING, ANSWERED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok() =>
        {
            Ok(response)
        }
        Ok(Ok(_set_before_it_failed)) => ended_without_answer(task).await,
        Ok(Err(code)) => Err(Failure::Trap(format!(
            "the component answered the error {code:?}"
        ))),
        Err(_dropped) => ended_without_answer(task).await,
    }
}

/// Why an instance's task gave no response the server could send.
async fn ended_without_answer(
    task: JoinHandle<Result<(), Failure>>,
) -> Result<http::Response<HyperOutgoingBody>, Failure> {
    match task.await {
        Ok(Ok(())) => Err(Failure::Trap(
            "the component returned without setting a response".into(),
        )),
        Ok(Err(failure)) => Err(failure),
        Err(join) => Err(Failure::Setup(format!(
            "the instance's task failed: {join}"
        ))),
    }
}
