//! Limits and semantics as kube-apiserver has them, through real clients (kube-rs) and raw
//! HTTPS requests (where the exact bytes matter): `timeoutSeconds`, watches and lists at a
//! future resourceVersion, `remainingItemCount`, anonymous issuer discovery, and answers
//! that do not tell a client without credentials which tenants exist.

mod common;

use common::{RawResponse, Served, Tls};
use futures::StreamExt;
use k8s_openapi::api::core::v1::PodTemplate;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::WatchParams;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, VersionMatch, WatchEvent};
use serde_json::{Value, json};
use vcluster_apiserver::Tenant;

/// The tenant's host name and CA, presenting nothing: an anonymous client of that tenant.
fn by_host<'a>(tenant: &'a Tenant, host: &'a str) -> Tls<'a> {
    Tls {
        server_name: Some(host),
        ca_pem: tenant.identity.ca_cert_pem(),
        client: None,
    }
}

fn status(response: &RawResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{e}: {response:?}"))
}

fn template(name: &str) -> PodTemplate {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "counted"}},
        "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}},
    }))
    .expect("a PodTemplate")
}

/// A server with one tenant, `t`: the server, the tenant, its host name and its admin's
/// `Authorization` header value.
fn one_tenant() -> (Served, std::sync::Arc<Tenant>, String, String) {
    let (served, mut opened) = Served::start(&["t"]);
    let t = opened.remove(0);
    let host = served.tenants.host("t");
    let bearer = format!("Bearer {}", t.identity.admin_token());
    (served, t, host, bearer)
}

#[test]
fn timeouts_of_watches_and_lists_are_checked_and_zero_is_the_default() {
    let (served, t, host, bearer) = one_tenant();
    let (t, tls) = (&t, by_host(&t, &host));
    let auth = [("Authorization", bearer.as_str())];
    let get = |path: &str| served.raw(&tls, "GET", path, &auth, b"");

    let configmaps = "/api/v1/namespaces/default/configmaps";
    for query in ["watch=true&timeoutSeconds=-1", "timeoutSeconds=-1"] {
        let refused = get(&format!("{configmaps}?{query}"));
        assert_eq!(refused.code, 400, "{query}: {refused:?}");
        let body = status(&refused);
        assert_eq!(body["reason"], "BadRequest");
        assert_eq!(
            body["message"],
            "invalid timeoutSeconds -1: must be greater than or equal to 0"
        );
    }
    for (query, message) in [
        (
            "watch=true&timeoutSeconds=abc",
            r#"strconv.ParseInt: parsing "abc": invalid syntax"#,
        ),
        (
            "timeoutSeconds=99999999999999999999",
            r#"strconv.ParseInt: parsing "99999999999999999999": value out of range"#,
        ),
        (
            "limit=x",
            r#"strconv.ParseInt: parsing "x": invalid syntax"#,
        ),
    ] {
        let refused = get(&format!("{configmaps}?{query}"));
        assert_eq!(refused.code, 400, "{query}: {refused:?}");
        assert_eq!(status(&refused)["message"], message, "{query}");
    }
    // A timeout the client names ends the watch: the response is read to its end.
    let ended = get(&format!("{configmaps}?watch=true&timeoutSeconds=1"));
    assert_eq!(ended.code, 200, "{ended:?}");
    // A negative limit is no limit, as upstream reads it.
    assert_eq!(get(&format!("{configmaps}?limit=-3")).code, 200);

    // timeoutSeconds=0 is the server's default (30 to 60 minutes), not a watch that ends
    // at once: it is still there to deliver what is created after it started.
    served.runtime.block_on(async {
        let client = served.kube_client(t).await;
        let api: Api<PodTemplate> = Api::namespaced(client, "default");
        let listed = api.list(&ListParams::default()).await.expect("list");
        let from = listed.metadata.resource_version.expect("a resourceVersion");
        let mut events = api
            .watch(&WatchParams::default().timeout(0), &from)
            .await
            .expect("watch")
            .boxed();
        api.create(&PostParams::default(), &template("after"))
            .await
            .expect("create");
        match events.next().await {
            Some(Ok(WatchEvent::Added(added))) => {
                assert_eq!(added.metadata.name.as_deref(), Some("after"));
            }
            other => panic!("the watch ended or failed instead: {other:?}"),
        }
    });
}

#[test]
fn future_resource_versions_are_waited_for_by_watches_and_refused_by_lists() {
    let (served, t, host, bearer) = one_tenant();
    let (t, tls) = (&t, by_host(&t, &host));
    let auth = [("Authorization", bearer.as_str())];
    served.runtime.block_on(async {
        let client = served.kube_client(t).await;
        let api: Api<PodTemplate> = Api::namespaced(client, "default");
        // Nothing has read pod templates yet: no watch cache of them exists, so the watch
        // below is the one that starts it.
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> =
            Api::all(api.clone().into_client());
        let now: u64 = namespaces
            .list(&ListParams::default())
            .await
            .expect("list")
            .metadata
            .resource_version
            .expect("a resourceVersion")
            .parse()
            .expect("a number");
        let future = now + 3;
        let mut events = api
            .watch(&WatchParams::default().timeout(60), &future.to_string())
            .await
            .expect("a watch from a future resourceVersion starts")
            .boxed();
        let mut created = Vec::new();
        for i in 0..6 {
            let made = api
                .create(&PostParams::default(), &template(&format!("p{i}")))
                .await
                .expect("create");
            let revision: u64 = made
                .metadata
                .resource_version
                .expect("a resourceVersion")
                .parse()
                .expect("a number");
            created.push((made.metadata.name.expect("a name"), revision));
        }
        let expected: Vec<&(String, u64)> = created.iter().filter(|(_, rv)| *rv > future).collect();
        assert!(!expected.is_empty(), "{created:?}");
        for (name, revision) in expected {
            match events.next().await {
                Some(Ok(WatchEvent::Added(added))) => {
                    assert_eq!(added.metadata.name.as_ref(), Some(name));
                    assert_eq!(
                        added.metadata.resource_version,
                        Some(revision.to_string()),
                        "only the changes after the revision asked for are delivered"
                    );
                }
                other => panic!("expected {name} at {revision}: {other:?}"),
            }
        }
    });

    // A list at a revision the server has not reached: upstream's 504, which client-go's
    // reflector recognizes by its cause; from the watch cache, with a retry in 1 s.
    let far = "999999999";
    let path = format!("/api/v1/namespaces/default/podtemplates?resourceVersion={far}");
    let refused = served.raw(&tls, "GET", &path, &auth, b"");
    assert_eq!(refused.code, 504, "{refused:?}");
    assert!(
        refused.head.contains("\r\nretry-after: 1"),
        "{}",
        refused.head
    );
    let body = status(&refused);
    assert_eq!(body["reason"], "Timeout");
    assert!(
        body["message"]
            .as_str()
            .expect("a message")
            .starts_with(&format!(
                "Timeout: Too large resource version: {far}, current: "
            )),
        "{body}"
    );
    assert_eq!(
        body["details"],
        json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        })
    );
    // Read from the store (an exact revision): the same error, without the retry advice.
    let exact = served.raw(
        &tls,
        "GET",
        &format!("{path}&resourceVersionMatch=Exact"),
        &auth,
        b"",
    );
    assert_eq!(exact.code, 504, "{exact:?}");
    assert!(!exact.head.to_ascii_lowercase().contains("retry-after"));
    assert_eq!(
        status(&exact)["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
}

#[test]
fn limited_lists_report_how_many_objects_remain() {
    let (served, opened) = Served::start(&["t"]);
    let t = &opened[0];
    served.runtime.block_on(async {
        let client = served.kube_client(t).await;
        let api: Api<PodTemplate> = Api::namespaced(client, "default");
        for i in 0..5 {
            api.create(&PostParams::default(), &template(&format!("pt-{i}")))
                .await
                .expect("create");
        }
        // A page: its names, its remainingItemCount and its continue token.
        let page = async |params: ListParams| {
            let list = api.list(&params).await.expect("list");
            let names: Vec<String> = list
                .items
                .iter()
                .map(|p| p.metadata.name.clone().expect("a name"))
                .collect();
            let token = list.metadata.continue_.filter(|c| !c.is_empty());
            (names, list.metadata.remaining_item_count, token)
        };
        let limit = |n| ListParams::default().limit(n);

        // From the store, page by page.
        let (names, remaining, token) = page(limit(2)).await;
        assert_eq!(
            (names, remaining),
            (vec!["pt-0".into(), "pt-1".into()], Some(3))
        );
        let (names, remaining, token) = page(limit(2).continue_token(&token.expect("more"))).await;
        assert_eq!(
            (names, remaining),
            (vec!["pt-2".into(), "pt-3".into()], Some(1))
        );
        let last = page(limit(2).continue_token(&token.expect("more"))).await;
        assert_eq!(last, (vec!["pt-4".into()], None, None));

        // With a selector the count would not be exact: it is left out, as upstream does.
        let (names, remaining, token) = page(limit(2).labels("app=counted")).await;
        assert_eq!(
            (names, remaining),
            (vec!["pt-0".into(), "pt-1".into()], None)
        );
        assert!(token.is_some());

        // From the watch cache (any state at least as new as a revision), the next pages
        // from the store at the cache's revision.
        let rv = api
            .list(&ListParams::default())
            .await
            .expect("list")
            .metadata
            .resource_version
            .expect("an rv");
        let cached = limit(2).at(&rv).matching(VersionMatch::NotOlderThan);
        let (names, remaining, token) = page(cached).await;
        assert_eq!(
            (names, remaining),
            (vec!["pt-0".into(), "pt-1".into()], Some(3))
        );
        let rest = page(limit(10).continue_token(&token.expect("more"))).await;
        assert_eq!(
            rest,
            (
                vec!["pt-2".into(), "pt-3".into(), "pt-4".into()],
                None,
                None
            )
        );

        // A limit with a resourceVersion and no match rule reads at exactly that revision
        // (upstream's legacy meaning): later objects are not in it.
        api.create(&PostParams::default(), &template("pt-5"))
            .await
            .expect("create");
        let exact = api
            .list(&ListParams::default().limit(10).at(&rv))
            .await
            .expect("list");
        assert_eq!(
            exact.metadata.resource_version.as_deref(),
            Some(rv.as_str())
        );
        assert_eq!(exact.items.len(), 5);
    });
    // resourceVersion=0 is served whole from the cache, the limit ignored, as upstream's
    // (kube-rs leaves out a 0 with a limit, so this one is sent by hand).
    let host = served.tenants.host("t");
    let bearer = format!("Bearer {}", t.identity.admin_token());
    let any = served.raw(
        &by_host(t, &host),
        "GET",
        "/api/v1/namespaces/default/podtemplates?limit=2&resourceVersion=0",
        &[("Authorization", &bearer)],
        b"",
    );
    let any = status(&any);
    assert_eq!(any["items"].as_array().map(Vec::len), Some(6), "{any}");
    assert_eq!(any["metadata"].get("continue"), None, "{any}");
}

#[test]
fn issuer_discovery_is_anonymous_where_the_tenant_is_named_by_host() {
    let (served, opened) = Served::start(&["t"]);
    let t = &opened[0];
    let host = served.tenants.host("t");
    let anonymous = by_host(t, &host);
    let get =
        |path: &str, headers: &[(&str, &str)]| served.raw(&anonymous, "GET", path, headers, b"");

    let discovery = get("/.well-known/openid-configuration", &[]);
    assert_eq!(discovery.code, 200, "{discovery:?}");
    let document = status(&discovery);
    assert_eq!(document["issuer"], "https://t.vcluster.local");
    assert_eq!(
        document["jwks_uri"],
        "https://t.vcluster.local/openid/v1/jwks"
    );
    let keys = get("/openid/v1/jwks", &[]);
    assert_eq!(keys.code, 200, "{keys:?}");
    assert_eq!(status(&keys)["keys"][0]["kty"], "EC");
    // Anonymous there only: everything else still wants a credential, and a credential
    // that does not verify is refused, never taken for anonymous.
    assert_eq!(get("/api", &[]).code, 401);
    assert_eq!(get("/metrics", &[]).code, 401);
    let forged = get(
        "/.well-known/openid-configuration",
        &[("Authorization", "Bearer forged")],
    );
    assert_eq!(forged.code, 401, "{forged:?}");

    // It is RBAC's bootstrap binding that lets anonymous clients in: a tenant admin who
    // takes `system:unauthenticated` out of it closes the door.
    served.runtime.block_on(async {
        let bindings: Api<ClusterRoleBinding> = Api::all(served.kube_client(t).await);
        let name = "system:service-account-issuer-discovery";
        let binding = bindings.get(name).await.expect("the bootstrap binding");
        let groups: Vec<&str> = binding
            .subjects
            .iter()
            .flatten()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(groups, ["system:serviceaccounts", "system:unauthenticated"]);
        let only_accounts = json!({"subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts"}]});
        bindings
            .patch(name, &PatchParams::default(), &Patch::Merge(&only_accounts))
            .await
            .expect("patch");
    });
    let closed = get("/openid/v1/jwks", &[]);
    assert_eq!(closed.code, 403, "{closed:?}");
    assert_eq!(
        status(&closed)["message"],
        r#"forbidden: User "system:anonymous" cannot get path "/openid/v1/jwks""#
    );
}

#[test]
fn answers_do_not_tell_a_client_without_credentials_which_tenants_exist() {
    let (served, opened) = Served::start(&["a", "b"]);
    let (a, b) = (&opened[0], &opened[1]);
    served.tenants.set_default("a");
    let (cert, key) = a
        .identity
        .issue_client("admin", &["system:masters"])
        .expect("cert");
    let a_token = format!("Bearer {}", a.identity.admin_token());
    let a_host = served.tenants.host("a");
    // Connections by address (the certificate is the default tenant's, a's) and by a's host
    // name, anonymous or with a's credentials, asking for b (which exists) or for a tenant
    // that does not.
    let clients = [
        (
            "anonymous",
            Tls {
                server_name: None,
                ca_pem: a.identity.ca_cert_pem(),
                client: None,
            },
            None,
        ),
        (
            "a's client certificate",
            Tls {
                server_name: None,
                ca_pem: a.identity.ca_cert_pem(),
                client: Some((cert, key)),
            },
            None,
        ),
        (
            "a's token",
            Tls {
                server_name: None,
                ca_pem: a.identity.ca_cert_pem(),
                client: None,
            },
            Some(a_token.as_str()),
        ),
        (
            "anonymous, by a's host name",
            Tls {
                server_name: Some(&a_host),
                ca_pem: a.identity.ca_cert_pem(),
                client: None,
            },
            None,
        ),
    ];
    let configmap = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#;
    let requests: [(&str, &str, &[u8]); 16] = [
        ("GET", "/api", b""),
        ("GET", "/api/v1/namespaces", b""),
        ("GET", "/apis", b""),
        ("GET", "/version", b""),
        ("GET", "/livez", b""),
        ("GET", "/readyz?verbose", b""),
        ("GET", "/healthz/etcd", b""),
        ("GET", "/metrics", b""),
        ("GET", "/.well-known/openid-configuration", b""),
        ("GET", "/openid/v1/jwks", b""),
        ("GET", "/openapi/v2", b""),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true",
            b"",
        ),
        ("POST", "/api/v1/namespaces/default/configmaps", configmap),
        ("DELETE", "/api/v1/namespaces/default/configmaps/x", b""),
        ("GET", "/", b""),
        ("GET", "/no/such/path", b""),
    ];
    for (who, tls, token) in &clients {
        let headers: Vec<(&str, &str)> = token.iter().map(|t| ("Authorization", *t)).collect();
        for (method, path, body) in &requests {
            let existing = served.raw(tls, method, &format!("/clusters/b{path}"), &headers, body);
            let missing = served.raw(
                tls,
                method,
                &format!("/clusters/nope{path}"),
                &headers,
                body,
            );
            assert_eq!(
                existing, missing,
                "{who}: {method} {path} tells that tenant b exists"
            );
            // Nobody here is b's: b's objects are never reached.
            assert!(
                matches!(existing.code, 200 | 401 | 404),
                "{who}: {method} {path}: {existing:?}"
            );
        }
    }
    // What they look like: the probes and the version are the process's, everything else
    // is what a tenant answers a client it does not know.
    let anonymous = &clients[0].1;
    assert_eq!(
        served
            .raw(anonymous, "GET", "/clusters/nope/livez", &[], b"")
            .text(),
        "ok"
    );
    let refused = served.raw(anonymous, "GET", "/clusters/nope/api", &[], b"");
    assert_eq!(refused.code, 401);
    assert_eq!(
        refused.text(),
        concat!(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
            r#""message":"Unauthorized","reason":"Unauthorized","code":401}"#,
            "\n"
        )
    );
    // b's own credentials still reach b by path.
    let b_token = format!("Bearer {}", b.identity.admin_token());
    let own = served.raw(
        anonymous,
        "GET",
        "/clusters/b/api/v1/namespaces/kube-system",
        &[("Authorization", &b_token)],
        b"",
    );
    assert_eq!(own.code, 200, "{own:?}");
}

#[test]
fn one_request_is_answered_without_a_socket_as_over_one() {
    // `handle` is what the server runs for each request it reads, and what the fuzz target
    // calls: the same answers, without TLS in between.
    let (served, opened) = Served::start(&["t"]);
    served.tenants.set_default("t");
    let conn = vcluster_apiserver::Connection::new(None, Vec::new());
    let gate = vcluster_apiserver::Gate::new(&vcluster_apiserver::Limits::default());
    let bearer = format!("Bearer {}", opened[0].identity.admin_token());
    let answer = |method: &str, path: &str, body: &'static [u8]| {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(body)))
            .expect("a request");
        let response = served.runtime.block_on(vcluster_apiserver::handle(
            &served.tenants,
            &conn,
            &gate,
            request,
        ));
        response.status().as_u16()
    };
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"direct"}}"#;
    assert_eq!(answer("POST", configmaps, body), 201);
    assert_eq!(answer("GET", &format!("{configmaps}/direct"), b""), 200);
    assert_eq!(
        answer(
            "GET",
            &format!("{configmaps}?watch=1&timeoutSeconds=-5"),
            b""
        ),
        400
    );
    assert_eq!(answer("GET", "/clusters/nope/api", b""), 401);
}
