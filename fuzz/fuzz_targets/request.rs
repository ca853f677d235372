//! Any request gets a response, and soon, never a panic: the whole of request handling
//! (`vcluster_apiserver::handle`, what the server runs for every request it reads) against
//! two tenants on an embedded store in a temporary directory, which keep what earlier inputs
//! wrote.
//!
//! An input reads like an HTTP/1 request: a request line (`METHOD /path?query`), header
//! lines (`Name: value`), a blank line, then the body. `@token` in a header value stands
//! for the default tenant's admin token, so that inputs get past authentication.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use vcluster_apiserver::{Connection, Tenants};
use vcluster_store::{Embedded, EmbeddedOptions};

/// How long a request may take to be answered (its headers; a watch's body streams on).
/// The slowest legitimate wait is a LIST at a future resourceVersion: 3 s.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How much of a response body is read: enough for a watch's first events.
const BODY_FOR: Duration = Duration::from_millis(20);

struct Server {
    runtime: tokio::runtime::Runtime,
    tenants: Arc<Tenants>,
    token: String,
    _dir: tempfile::TempDir,
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let backend = Arc::new(
        Embedded::open(dir.path().join("store.redb"), EmbeddedOptions::default()).expect("store"),
    );
    let tenants = Arc::new(Tenants::new(backend, "vcluster.local", vec!["127.0.0.1".into()]));
    let token = runtime.block_on(async {
        let fuzz = tenants.open_or_create("fuzz").await.expect("tenant");
        tenants.open_or_create("other").await.expect("tenant");
        fuzz.identity.admin_token().to_owned()
    });
    tenants.set_default("fuzz");
    Server {
        runtime,
        tenants,
        token,
        _dir: dir,
    }
});

/// The request an input spells, if it spells one hyper could have handed the server.
fn request(data: &[u8], token: &str) -> Option<http::Request<Full<Bytes>>> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &b""[..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut builder = http::Request::builder().method(method).uri(target);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim().replace("@token", token));
        }
    }
    builder.body(Full::new(Bytes::copy_from_slice(body))).ok()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let server = &*SERVER;
    let Some(request) = request(data, &server.token) else {
        return;
    };
    let what = format!("{} {}", request.method(), request.uri());
    server.runtime.block_on(async {
        let conn = Connection::new(None, Vec::new());
        let gate = vcluster_apiserver::Gate::new(&vcluster_apiserver::Limits::default());
        let answered = tokio::time::timeout(
            ANSWER_WITHIN,
            vcluster_apiserver::handle(&server.tenants, &conn, &gate, request),
        )
        .await;
        let Ok(response) = answered else {
            panic!("{what} was not answered within {ANSWER_WITHIN:?}");
        };
        let mut body = response.into_body();
        let _ = tokio::time::timeout(BODY_FOR, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    });
});
