//! Watches, served from the tenant's watch cache of the resource.
//!
//! The response is a stream of newline-delimited JSON events, flushed one by one. A watch
//! from a revision the cache no longer holds gets a 410 `Expired` ERROR event inside the
//! stream (the only form kube-rs and client-go re-list on); one from a revision the store has
//! not reached yet starts and delivers the changes after it once they happen, as upstream's
//! does (a LIST at such a revision is a 504 instead). `sendInitialEvents` (WatchList)
//! is refused with 422, which makes client-go ≥ 1.35 fall back to list-then-watch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::status::ApiError;

use crate::cache::{CacheEvent, EventType, Next, WatchCache};
use crate::http::{Body, Shape};
use crate::list::{Selectors, parse_revision, shaped_object, timeout_seconds};
use crate::objects::store_error;
use crate::router::Target;
use crate::tenant::Tenant;

/// kube-apiserver's `--min-request-timeout`: a watch whose client names no timeout (or 0)
/// lasts between once and twice this, picked at random so that watches started together
/// do not all end together.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

pub(crate) async fn handle(
    tenant: &Tenant,
    target: &Target,
    params: &HashMap<String, String>,
    shape: Shape,
) -> Result<Response<Body>, ApiError> {
    if params.get("sendInitialEvents").is_some_and(|v| v == "true") {
        return Err(ApiError::invalid(
            &target.rt,
            "",
            vec![vcluster_core::status::Cause {
                reason: "FieldValueForbidden",
                field: "sendInitialEvents".into(),
                message: "Forbidden: sendInitialEvents is not supported; list, then watch".into(),
            }],
        ));
    }
    let selectors = Selectors::parse(&target.rt, params)?;
    let requested = parse_revision(params)?.unwrap_or(0);
    let timeout = timeout_seconds(params)?.map_or_else(default_timeout, Duration::from_secs);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    // A watch from a revision the store has not reached yet is served as upstream serves
    // it: it starts, and delivers the changes after that revision once they happen (a
    // cache started for it starts at the latest state).
    let cache = match tenant.cache(&target.rt, requested).await {
        Err(vcluster_store::Error::FutureRevision { .. }) => tenant.cache(&target.rt, 0).await,
        started => started,
    }
    .map_err(store_error)?;
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let watcher = Watcher {
        rt: target.rt.clone(),
        prefix: Bytes::from(registry::storage_prefix(
            &target.rt,
            target.namespace.as_deref(),
        )),
        selectors,
        shape,
        tx,
    };
    let drained = tenant.drain.started();
    tokio::spawn(watcher.run(cache, requested, timeout, bookmarks, drained));
    let body = StreamBody::new(frames_from(rx)).boxed();
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A watch's length when its client names none: between [`MIN_REQUEST_TIMEOUT`] and twice
/// that.
fn default_timeout() -> Duration {
    MIN_REQUEST_TIMEOUT.mul_f64(1.0 + rand::random::<f64>())
}

struct Watcher {
    rt: Arc<ResourceType>,
    /// Keys of the watched namespace (or all).
    prefix: Bytes,
    selectors: Selectors,
    shape: Shape,
    tx: mpsc::Sender<Bytes>,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let encoded = serde_json::to_vec(object).expect("a JSON value serializes");
    framed(kind, &encoded)
}

/// `{"type":KIND,"object":OBJECT}` and a newline, around an already serialized object.
fn framed(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

impl Watcher {
    /// Sends a cached event, reusing its serialized object where the client wants it as is.
    async fn send_event(&self, kind: &str, event: &CacheEvent) -> bool {
        self.send_cached(kind, &event.object, &event.encoded).await
    }

    /// Sends an object whose JSON is already encoded.
    async fn send_cached(&self, kind: &str, object: &Value, encoded: &[u8]) -> bool {
        match self.shape {
            // Custom objects may be stored at another version than the one watched.
            Shape::Object
                if self.rt.custom.is_none() || object["apiVersion"] == *self.rt.api_version() =>
            {
                self.tx.send(framed(kind, encoded)).await.is_ok()
            }
            _ => self.send(kind, object).await,
        }
    }

    async fn send(&self, kind: &str, object: &Value) -> bool {
        let line = match kind {
            "ADDED" | "MODIFIED" | "DELETED" => {
                line(kind, &shaped_object(&self.rt, self.shape, object.clone()))
            }
            _ => line(kind, object),
        };
        self.tx.send(line).await.is_ok()
    }

    /// The event a watcher with these selectors sees, if any: an object entering the
    /// selection is ADDED, one leaving it is DELETED.
    fn translate(&self, event: &CacheEvent) -> Option<&'static str> {
        if !event.key.starts_with(&self.prefix) {
            return None;
        }
        let now = self.selectors.matches(&event.object);
        let before = event
            .prev
            .as_ref()
            .is_some_and(|p| self.selectors.matches(p));
        match (event.kind, before, now) {
            (EventType::Added, _, true) => Some("ADDED"),
            (EventType::Modified, true, true) => Some("MODIFIED"),
            (EventType::Modified, false, true) => Some("ADDED"),
            (EventType::Modified, true, false) => Some("DELETED"),
            (EventType::Deleted, true, _) => Some(EventType::Deleted.as_str()),
            _ => None,
        }
    }

    /// Streams events until the client goes, the timeout passes, or `drained` resolves
    /// (the server shuts down): each ends the stream cleanly, as a timeout does upstream,
    /// and the client's watch starts again from its last resourceVersion.
    async fn run(
        self,
        cache: Arc<WatchCache>,
        requested: u64,
        timeout: Duration,
        bookmarks: bool,
        drained: impl Future<Output = ()>,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        tokio::pin!(drained);
        let mut head = cache.subscribe();
        let mut cursor = requested;
        if requested == 0 {
            // No revision: the current state first, as ADDED events.
            let (objects, revision) = cache.snapshot(&self.prefix);
            for (_, cached) in objects {
                if self.selectors.matches(&cached.object)
                    && !self
                        .send_cached("ADDED", &cached.object, &cached.encoded)
                        .await
                {
                    return;
                }
            }
            cursor = revision;
        }
        let mut bookmark =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        // Ticks missed while bookmarks wait for a future revision are not made up for.
        bookmark.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            head.borrow_and_update();
            match cache.after(cursor) {
                Next::Expired { oldest } => {
                    let status =
                        ApiError::expired(format!("too old resource version: {cursor} ({oldest})"));
                    self.send("ERROR", &status.to_status()).await;
                    return;
                }
                Next::Events(events) => {
                    for event in events {
                        if let Some(kind) = self.translate(&event)
                            && !self.send_event(kind, &event).await
                        {
                            return;
                        }
                        cursor = event.revision;
                    }
                }
            }
            if !cache.is_alive() {
                let status = ApiError::expired("the watch cache was reset; list again");
                self.send("ERROR", &status.to_status()).await;
                return;
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(deadline) => return,
                () = self.tx.closed() => return,
                () = &mut drained => return,
                // Never at a revision the cache has not reached: a watch from a future one
                // gets its first bookmark once the store is past it, as upstream's does.
                _ = bookmark.tick(), if bookmarks && cursor <= cache.revision() => {
                    let object = json!({
                        "kind": self.rt.kind,
                        "apiVersion": self.rt.api_version(),
                        "metadata": {"resourceVersion": cursor.to_string()},
                    });
                    if !self.send("BOOKMARK", &object).await {
                        return;
                    }
                }
            }
        }
    }
}

/// A stream of body frames from a channel.
pub(crate) fn frames_from(
    mut rx: mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_without_a_timeout_lasts_between_once_and_twice_the_minimum() {
        for _ in 0..1000 {
            let timeout = default_timeout();
            assert!(
                (MIN_REQUEST_TIMEOUT..MIN_REQUEST_TIMEOUT * 2).contains(&timeout),
                "{timeout:?}"
            );
        }
    }
}
