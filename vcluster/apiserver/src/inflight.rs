//! Requests in flight: kube-apiserver's max-in-flight filter (a 429 past
//! `--max-requests-inflight` or `--max-mutating-requests-inflight`, watches and streams not
//! counted) and its timeout for the other requests (`--request-timeout`), plus a bound on
//! the response bytes held for clients that have not read them, which no one is exempt
//! from.
//!
//! The seats are the process's, shared by every tenant, and each tenant may hold at most a
//! share of them ([`Limits::max_requests_inflight_per_tenant`]), so that one tenant's
//! clients that stop reading make that tenant's requests wait or get 429s, not another's.
//! Upstream never refuses `system:masters`; here every tenant's admin is `system:masters`
//! of its own tenant, so only the platform's (the default tenant's, whose admin is the
//! process's) is never refused: the others are held to their tenant's share like anyone.
//! (Upstream's API Priority and Fairness, with its queues, is the front door's.)
//!
//! A request holds its seats until its response body has been sent or dropped, so a
//! client that does not read keeps counting. At the deadline a request that has not
//! answered gets a 504, and one whose body is still unsent loses it: the body and the
//! seats are freed at once (hyper does not poll a body while the client's flow-control
//! window is closed, so this cannot wait for the next poll), and the stream is reset
//! when hyper polls it next.

use std::collections::HashMap;
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
    read_only: Seats,
    mutating: Seats,
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

/// The seats of one limit: the process's, and each tenant's share of them.
struct Seats {
    all: Option<Arc<Semaphore>>,
    /// How many of them one tenant may hold (0: no share, only the process's limit).
    share: usize,
    /// Each tenant's share, made when the tenant first asks.
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Seats {
    fn new(all: usize, share: usize) -> Self {
        Self {
            all: (all > 0).then(|| Arc::new(Semaphore::new(all))),
            share,
            tenants: Mutex::default(),
        }
    }

    /// A seat of `tenant`'s share, and one of the process's; `None` if either is full.
    fn take(&self, tenant: &str) -> Option<Seat> {
        let share = if self.share > 0 {
            let share = {
                let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(share) = tenants.get(tenant) {
                    share.clone()
                } else {
                    let share = Arc::new(Semaphore::new(self.share));
                    tenants.insert(tenant.to_owned(), share.clone());
                    share
                }
            };
            Some(share.try_acquire_owned().ok()?)
        } else {
            None
        };
        let all = match &self.all {
            Some(all) => Some(all.clone().try_acquire_owned().ok()?),
            None => None,
        };
        Some(Seat {
            _all: all,
            _share: share,
        })
    }
}

/// The seats a request holds: one of the process's and one of its tenant's share (each
/// `None` where there is no such limit).
#[derive(Debug)]
struct Seat {
    _all: Option<OwnedSemaphorePermit>,
    _share: Option<OwnedSemaphorePermit>,
}

/// Who asks, as the in-flight limit tells them apart.
pub(crate) struct Asking<'a> {
    pub tenant: &'a str,
    /// Whether `tenant` is the platform's own (the default tenant), whose super-users are
    /// the process's.
    pub platform: bool,
    pub user: &'a str,
    pub groups: &'a [String],
}

impl Asking<'_> {
    /// Never refused, as upstream never refuses `system:masters`: the super-users of the
    /// platform's tenant only (another tenant's admin is a super-user of that tenant alone).
    fn exempt(&self) -> bool {
        self.platform && self.groups.iter().any(|g| g == "system:masters")
    }
}

impl Gate {
    pub fn new(limits: &Limits) -> Self {
        Self {
            read_only: Seats::new(
                limits.max_requests_inflight,
                limits.max_requests_inflight_per_tenant,
            ),
            mutating: Seats::new(
                limits.max_mutating_requests_inflight,
                limits.max_mutating_requests_inflight_per_tenant,
            ),
            unsent: (limits.max_unsent_response_bytes > 0)
                .then(|| Arc::new(Semaphore::new(limits.max_unsent_response_bytes))),
            timeout: limits.request_timeout,
        }
    }

    /// Admits a request of `kind` by `asking`: its seats and deadline, or upstream's 429.
    pub(crate) fn admit(&self, kind: Kind, asking: &Asking<'_>) -> Result<Admission, Refused> {
        let seats = match kind {
            Kind::LongRunning => return Ok(Admission::default()),
            Kind::ReadOnly => &self.read_only,
            Kind::Mutating => &self.mutating,
        };
        let admitted = |seat| Admission {
            seat,
            deadline: Some(Instant::now() + self.timeout),
            unsent: self.unsent.clone(),
            bytes: None,
        };
        match seats.take(asking.tenant) {
            Some(seat) => Ok(admitted(Some(seat))),
            // As upstream: the process's super-user always gets an answer.
            None if asking.exempt() => Ok(admitted(None)),
            None => {
                if let Some(unlogged) = REFUSED.check() {
                    tracing::warn!(
                        tenant = asking.tenant,
                        user = asking.user,
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

/// A request let in: its seats (none for a long-running request, the process's super-user
/// past the limit, or without a limit), its deadline, the budget of unsent response bytes
/// it answers within (none for a long-running request) and, once its response is made, its
/// bytes in that budget.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    seat: Option<Seat>,
    deadline: Option<Instant>,
    unsent: Option<Arc<Semaphore>>,
    bytes: Option<OwnedSemaphorePermit>,
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

    /// Takes `response`'s size from the budget of unsent response bytes, to be held until
    /// it is sent or dropped; a response that does not fit in what is left is answered
    /// upstream's 429 instead, as past the in-flight limit (the budget is full of
    /// responses that clients are not reading). The answer to send, and so to count.
    pub(crate) fn reserve(&mut self, response: Response<Body>) -> Response<Body> {
        let size = hyper::body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        let Some(unsent) = self.unsent.take().filter(|_| size > PIECE as u64) else {
            return response;
        };
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        match unsent.try_acquire_many_owned(permits) {
            Ok(permit) => {
                self.bytes = Some(permit);
                response
            }
            Err(_) => {
                if let Some(unlogged) = UNSENT.check() {
                    tracing::warn!(
                        size,
                        unlogged,
                        "the response bytes held for clients that do not read are at their limit; answering 429"
                    );
                }
                Refused.response()
            }
        }
    }

    /// `response` with its body holding the seats and the bytes [`Self::reserve`] took
    /// until it is sent or dropped, and ended at the deadline.
    pub(crate) fn hold(self, response: Response<Body>) -> Response<Held> {
        response.map(|body| Held::new(body, self))
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
    _seat: Option<Seat>,
    /// The body's bytes in the budget of unsent response bytes.
    _bytes: Option<OwnedSemaphorePermit>,
}

impl Held {
    fn new(body: Body, admission: Admission) -> Self {
        let sending = Arc::new(Mutex::new(Some(Sending {
            body,
            rest: Bytes::new(),
            _seat: admission.seat,
            _bytes: admission.bytes,
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
