//! Requests in flight: kube-apiserver's max-in-flight filter (a 429 past
//! `--max-requests-inflight` or `--max-mutating-requests-inflight`, watches and streams not
//! counted, `system:masters` never refused) and its timeout for the other requests
//! (`--request-timeout`), plus a bound on the response bytes held for clients that have not
//! read them, which no one is exempt from.
//!
//! Both are the process's, shared by every tenant: a client that stops reading can make
//! other tenants' requests wait or get 429s until the request timeout frees what it holds
//! (and every tenant's admin is `system:masters` of its own tenant). Shares per tenant
//! (upstream's API Priority and Fairness) are the front door's.
//!
//! A request holds its seat until its response body has been sent or dropped, so a
//! client that does not read keeps counting. At the deadline a request that has not
//! answered gets a 504, and one whose body is still unsent loses it: the body and the
//! seat are freed at once (hyper does not poll a body while the client's flow-control
//! window is closed, so this cannot wait for the next poll), and the stream is reset
//! when hyper polls it next.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{HeaderValue, Response, StatusCode};
use hyper::body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use vcluster_core::status::{ApiError, Reason};

use crate::http::Body;
use crate::limits::{Limits, Throttled};

/// What the in-flight limit tells apart (upstream's `nonMutatingRequestVerbs` are get,
/// list and watch; watches and streams are long-running and not counted at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    LongRunning,
    ReadOnly,
    Mutating,
}

/// The seats of both limits, and the request timeout: what [`handle`](crate::handle) admits
/// requests through (one per server).
pub struct Gate {
    read_only: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
    /// One permit per byte of response bodies not yet sent (see
    /// [`Limits::max_unsent_response_bytes`]).
    unsent: Option<Arc<Semaphore>>,
    timeout: std::time::Duration,
}

/// The largest piece of a response body handed to hyper at once while the request has a
/// deadline. Each piece is a copy, so that what hyper and h2 hold for a client that does
/// not read is this piece, not the whole response it was cut from.
const PIECE: usize = 16 << 10;

static REFUSED: Throttled = Throttled::new();
static ENDED: Throttled = Throttled::new();
static UNSENT: Throttled = Throttled::new();

impl Gate {
    pub fn new(limits: &Limits) -> Self {
        let seats = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        Self {
            read_only: seats(limits.max_requests_inflight),
            mutating: seats(limits.max_mutating_requests_inflight),
            unsent: seats(limits.max_unsent_response_bytes),
            timeout: limits.request_timeout,
        }
    }

    /// Admits a request of `kind` by the user named `user`, of `groups`: its seat and
    /// deadline, or upstream's 429.
    pub(crate) fn admit(
        &self,
        kind: Kind,
        user: &str,
        groups: &[String],
    ) -> Result<Admission, Refused> {
        let seats = match kind {
            Kind::LongRunning => return Ok(Admission::default()),
            Kind::ReadOnly => &self.read_only,
            Kind::Mutating => &self.mutating,
        };
        let deadline = Some(Instant::now() + self.timeout);
        let unsent = self.unsent.clone();
        let Some(seats) = seats else {
            return Ok(Admission {
                seat: None,
                deadline,
                unsent,
            });
        };
        match seats.clone().try_acquire_owned() {
            Ok(seat) => Ok(Admission {
                seat: Some(seat),
                deadline,
                unsent,
            }),
            // As upstream: a super-user always gets an answer.
            Err(_) if groups.iter().any(|g| g == "system:masters") => Ok(Admission {
                seat: None,
                deadline,
                unsent,
            }),
            Err(_) => {
                if let Some(unlogged) = REFUSED.check() {
                    tracing::warn!(
                        user,
                        kind = ?kind,
                        unlogged,
                        "too many requests in flight; answering 429"
                    );
                }
                Err(Refused)
            }
        }
    }
}

/// A request refused for the limit.
#[derive(Debug)]
pub(crate) struct Refused;

impl Refused {
    /// Upstream's answer past the limit: plain text (`http.Error`), `Retry-After: 1`.
    pub(crate) fn response(&self) -> Response<Body> {
        let mut response = crate::http::text(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests, please try again later.\n",
        );
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// A request let in: its seat (none for a long-running request, a super-user's over the
/// limit, or without a limit), its
/// deadline and the budget of unsent response bytes it answers within (none for a
/// long-running request).
#[derive(Debug, Default)]
pub(crate) struct Admission {
    seat: Option<OwnedSemaphorePermit>,
    deadline: Option<Instant>,
    unsent: Option<Arc<Semaphore>>,
}

impl Admission {
    /// Runs `handler` until the deadline; past it, upstream's 504.
    pub(crate) async fn run(
        &self,
        handler: impl Future<Output = Response<Body>>,
    ) -> Response<Body> {
        let Some(deadline) = self.deadline else {
            return handler.await;
        };
        match tokio::time::timeout_at(deadline, handler).await {
            Ok(response) => response,
            Err(_) => {
                let mut e = ApiError::new(
                    504,
                    Reason::Timeout,
                    "Timeout: request did not complete within the allotted timeout",
                );
                e.details = Some(serde_json::json!({}));
                crate::http::error(&e)
            }
        }
    }

    /// `response` with its body holding the seat, and its size in the budget of unsent
    /// response bytes, until it is sent or dropped, and ended at the deadline. A response
    /// that does not fit in what is left of the budget is not held: the client gets
    /// upstream's 429 instead, as past the in-flight limit (the budget is full of
    /// responses that clients are not reading).
    pub(crate) fn hold(mut self, response: Response<Body>) -> Response<Held> {
        let size = hyper::body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        let mut bytes = None;
        if let Some(unsent) = self.unsent.take()
            && size > PIECE as u64
        {
            let permits = u32::try_from(size).unwrap_or(u32::MAX);
            match unsent.try_acquire_many_owned(permits) {
                Ok(permit) => bytes = Some(permit),
                Err(_) => {
                    if let Some(unlogged) = UNSENT.check() {
                        tracing::warn!(
                            size,
                            unlogged,
                            "the response bytes held for clients that do not read are at their limit; answering 429"
                        );
                    }
                    return Refused.response().map(|body| Held::new(body, self, None));
                }
            }
        }
        response.map(|body| Held::new(body, self, bytes))
    }
}

/// A response body that holds its request's seat, ended at its deadline (see the module).
pub struct Held {
    sending: Arc<Mutex<Option<Sending>>>,
    /// Frees the body at the deadline; aborted when the body is done first.
    reclaim: Option<tokio::task::AbortHandle>,
    chunked: bool,
}

struct Sending {
    body: Body,
    /// The rest of a data frame larger than [`PIECE`], still to be handed out.
    rest: Bytes,
    _seat: Option<OwnedSemaphorePermit>,
    /// The body's bytes in the budget of unsent response bytes.
    _bytes: Option<OwnedSemaphorePermit>,
}

impl Held {
    fn new(body: Body, admission: Admission, bytes: Option<OwnedSemaphorePermit>) -> Self {
        let sending = Arc::new(Mutex::new(Some(Sending {
            body,
            rest: Bytes::new(),
            _seat: admission.seat,
            _bytes: bytes,
        })));
        let reclaim = admission.deadline.map(|deadline| {
            let sending = Arc::downgrade(&sending);
            tokio::spawn(reclaim_at(deadline, sending)).abort_handle()
        });
        Self {
            sending,
            chunked: reclaim.is_some(),
            reclaim,
        }
    }
}

async fn reclaim_at(deadline: Instant, sending: Weak<Mutex<Option<Sending>>>) {
    tokio::time::sleep_until(deadline).await;
    let Some(sending) = sending.upgrade() else {
        return;
    };
    let taken = sending.lock().unwrap_or_else(|p| p.into_inner()).take();
    if taken.is_some()
        && let Some(unlogged) = ENDED.check()
    {
        tracing::warn!(
            unlogged,
            "a response was not sent within the request timeout; its body is dropped and its stream reset"
        );
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(reclaim) = &self.reclaim {
            reclaim.abort();
        }
    }
}

/// The error a body ended at its deadline reports to hyper, which resets the stream.
#[derive(Debug, thiserror::Error)]
#[error("the response was not sent within the request timeout")]
pub struct TimedOut;

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = TimedOut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TimedOut>>> {
        let chunked = self.chunked;
        let mut sending = self.sending.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sending) = sending.as_mut() else {
            return Poll::Ready(Some(Err(TimedOut)));
        };
        if sending.rest.is_empty() {
            match Pin::new(&mut sending.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if chunked && data.len() > PIECE => sending.rest = data,
                    Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = sending.rest.len().min(PIECE);
        let piece = Bytes::copy_from_slice(&sending.rest[..n]);
        sending.rest.advance(n);
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        let sending = self.sending.lock().unwrap_or_else(|p| p.into_inner());
        sending
            .as_ref()
            .is_some_and(|s| s.rest.is_empty() && s.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let sending = self.sending.lock().unwrap_or_else(|p| p.into_inner());
        match sending.as_ref() {
            Some(s) => {
                let (hint, rest) = (s.body.size_hint(), s.rest.len() as u64);
                let mut with_rest = SizeHint::new();
                if let Some(upper) = hint.upper() {
                    with_rest.set_upper(upper + rest);
                }
                with_rest.set_lower(hint.lower() + rest);
                with_rest
            }
            None => SizeHint::default(),
        }
    }
}
