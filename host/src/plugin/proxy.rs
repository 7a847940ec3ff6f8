//! The second kind of plugin: a standard component of the `wasi:http/proxy`
//! world, served through `wasmtime-wasi-http`.
//!
//! Every request gets a fresh instance in the same sandbox as a
//! `sparrow:service` plugin (its store, memory limit, epoch deadline and
//! instance slot come from `sandbox` and `engine`), and the same failure
//! answers: a trap before the response is 500, the request timeout 504.
//! Bodies stream both ways: the request body is read by the component as it
//! arrives (bounded by `--max-body`, and failing once it has not all arrived
//! within `--body-timeout`), and the response body goes to the client as the
//! component writes it, while the instance keeps running in a task of its
//! own, holding its slot until it returns or its deadline. A body the
//! component has not finished when its instance ends (a trap, the deadline)
//! ends with an error, never as if whole: the client's connection is cut
//! without the last chunk, and a Sparrow caller reading it fails.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError};
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;
use wasmtime::Store;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::{HostOutgoingBody, HyperOutgoingBody, StreamContext};
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
    /// What became of the request's body: a failure it caused is the
    /// client's, not the component's.
    pub body: BodyDeadline,
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

/// When a request body must have all arrived: `--body-timeout` after the
/// request started, as for a body read whole. Shared with the body, which
/// notes how it failed, if it did (see [`BodyFault`]).
#[derive(Debug, Clone)]
pub struct BodyDeadline {
    at: tokio::time::Instant,
    fault: Arc<AtomicU8>,
}

/// How a client's request body failed as a standard component read it:
/// the client's doing, which its answer says (408, 413, 400), and no
/// failure of the component's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    /// Not all there by the deadline.
    Late = 1,
    /// Past `--max-body`.
    TooLarge = 2,
    /// Not valid HTTP framing, or the connection broke mid-body.
    Broken = 3,
}

impl BodyDeadline {
    pub fn new(started: Instant, timeout: Duration) -> Self {
        BodyDeadline {
            at: tokio::time::Instant::from_std(started + timeout),
            fault: Arc::default(),
        }
    }

    /// How the body failed, if it did.
    pub fn fault(&self) -> Option<BodyFault> {
        match self.fault.load(Ordering::Acquire) {
            1 => Some(BodyFault::Late),
            2 => Some(BodyFault::TooLarge),
            3 => Some(BodyFault::Broken),
            _ => None,
        }
    }
}

/// `body`, failing with `connection-read-timeout` once it has not all
/// arrived by `deadline`, which also learns how else it failed.
pub fn timed_body(body: WasiBody, deadline: &BodyDeadline) -> WasiBody {
    Timed {
        body,
        timer: Box::pin(tokio::time::sleep_until(deadline.at)),
        fault: deadline.fault.clone(),
    }
    .boxed_unsync()
}

/// A body with a deadline for its last byte (see [`timed_body`]).
struct Timed {
    body: WasiBody,
    timer: Pin<Box<tokio::time::Sleep>>,
    fault: Arc<AtomicU8>,
}

impl Body for Timed {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.fault.load(Ordering::Acquire) == BodyFault::Late as u8 {
            return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
        }
        // As `tokio::time::timeout` reads a whole body: what has arrived is
        // taken first, and only a body still waited for past the deadline
        // fails. The timer, polled while the client is silent, wakes the
        // reader at the deadline: a component blocked on its read learns
        // then, not when the request times out.
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            if let Some(Err(error)) = &frame {
                let fault = match error {
                    HttpError::HttpRequestBodySize(_) => BodyFault::TooLarge,
                    _ => BodyFault::Broken,
                };
                self.fault.store(fault as u8, Ordering::Release);
            }
            return Poll::Ready(frame);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.fault.store(BodyFault::Late as u8, Ordering::Release);
        Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
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
        let HttpCall { request, trace, .. } = call;
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
        // Before the store, and with it the writing end of the body, is
        // dropped: that alone would end the body as if whole.
        let unfinished = abort_unfinished(&mut self.store.data_mut().table);
        let service = &*self.store.data().env.name;
        match &ended {
            Err(failure)
                if self
                    .answered
                    .compare_exchange(PENDING, FAILED, Ordering::AcqRel, Ordering::Acquire)
                    .is_err() =>
            {
                tracing::error!(
                    service,
                    "component failed while sending its body: {failure}"
                );
            }
            Ok(()) if unfinished > 0 => {
                tracing::warn!(
                    service,
                    "component returned without finishing a body it wrote; cut short"
                );
            }
            _ => {}
        }
        ended
    }
}

/// Aborts every outgoing body in `table` (the response's, a request's) that
/// the component has not finished, so that its reader gets an error once
/// it has read what was written: the body ends then, rather than as if
/// whole when the store is dropped. A finished or dropped body has left the
/// table already. Returns how many were aborted.
fn abort_unfinished(table: &mut ResourceTable) -> usize {
    let mut aborted = 0;
    for entry in table.iter_mut() {
        if let Some(body) = entry.downcast_mut::<HostOutgoingBody>() {
            // `abort` takes the body by value; what is left in its place
            // goes with the store.
            let (empty, _) = HostOutgoingBody::new(StreamContext::Response, None, 1, 1);
            std::mem::replace(body, empty).abort();
            aborted += 1;
        }
    }
    aborted
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that gives `first`, then waits for ever: a client that
    /// stopped sending.
    struct Stalls(Option<Bytes>);

    impl Body for Stalls {
        type Data = Bytes;
        type Error = HttpError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
            match self.0.take() {
                Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn a_body_still_awaited_at_its_deadline_fails_then() {
        let deadline = BodyDeadline::new(Instant::now(), Duration::from_millis(100));
        let stalls = Stalls(Some(Bytes::from_static(b"0123456789"))).boxed_unsync();
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            timed_body(stalls, &deadline).collect(),
        )
        .await
        .expect("the deadline ends the read");
        assert!(
            matches!(read, Err(HttpError::ConnectionReadTimeout)),
            "{read:?}"
        );
        assert_eq!(deadline.fault(), Some(BodyFault::Late));
    }

    #[tokio::test]
    async fn a_body_that_arrived_in_time_is_read_whole_even_late() {
        let deadline = BodyDeadline::new(Instant::now(), Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let body = limited_body(http_body_util::Full::new(Bytes::from_static(b"all")), 10);
        let read = timed_body(body, &deadline).collect().await.unwrap();
        assert_eq!(read.to_bytes(), "all");
        assert_eq!(deadline.fault(), None);
    }

    #[tokio::test]
    async fn a_body_left_unfinished_ends_with_an_error_not_as_if_whole() {
        let unfinished = || {
            let mut table = ResourceTable::new();
            let (host, body) = HostOutgoingBody::new(StreamContext::Response, None, 1, 1);
            table.push(host).unwrap();
            (table, body)
        };
        // Dropped with its store alone, it ends as if whole...
        let (table, body) = unfinished();
        drop(table);
        assert!(body.collect().await.is_ok());
        // ...aborted first, with an error.
        let (mut table, body) = unfinished();
        assert_eq!(abort_unfinished(&mut table), 1);
        drop(table);
        assert!(body.collect().await.is_err());
    }
}
