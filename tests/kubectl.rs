//! `vcluster up` driven by real kubectl (1.33 and 1.36), on the embedded store and on a real
//! etcd: what a new user does first, and the errors they run into.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use vcluster_testkit::clients::Kubectl;
use vcluster_tests::{StoreKind, Tenant, Up, json, with_each_kubectl};

vcluster_tests::scenarios! {
    simulated_nodes: 0;
    with_each_kubectl: [
        first_steps,
        namespace_finalizers,
        service_account_tokens,
        server_side_apply,
    ],
}

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  labels:
    app: web
data:
  greeting: hello
";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: nginx:1
        env: [{name: A, value: \"1\"}, {name: B, value: \"2\"}]
      - name: sidecar
        image: envoy
";

/// What a new user does, with one kubectl version against one running control plane.
fn first_steps(tenant: &Tenant, version: &str) {
    let k = tenant.kubectl(version);
    let namespaces = k.ok(&["get", "namespaces", "-o", "json"]);
    let names: Vec<String> = json(&namespaces)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["metadata"]["name"].as_str().expect("name").to_owned())
        .collect();
    for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(
            names.iter().any(|n| n == ns),
            "namespace {ns} missing from {names:?}"
        );
    }
    assert!(k.ok(&["version"]).contains("Server Version: v1."));

    // A namespace of one's own, and a config map in it, applied twice.
    let ns = format!("team-{version}");
    let created = k.run_with(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
        )),
    );
    assert!(created.ok, "{}", created.stderr);
    let applied = k.run_with(&["apply", "-n", &ns, "-f", "-"], Some(CONFIGMAP));
    assert!(
        applied.ok && applied.stdout.contains("created"),
        "{}",
        applied.stderr
    );
    let again = k.run_with(&["apply", "-n", &ns, "-f", "-"], Some(CONFIGMAP));
    assert!(
        again.ok && again.stdout.contains("unchanged"),
        "{} {}",
        again.stdout,
        again.stderr
    );

    // Reads, with selectors.
    let cm = json(&k.ok(&["get", "configmap", "web-config", "-n", &ns, "-o", "json"]));
    assert_eq!(cm["data"]["greeting"], "hello");
    assert!(
        cm["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    let rv: u64 = cm["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("decimal");
    let selected = json(&k.ok(&["get", "cm", "-A", "-l", "app=web", "-o", "json"]));
    assert_eq!(selected["items"].as_array().expect("items").len(), 1);
    let none = json(&k.ok(&["get", "cm", "-n", &ns, "-l", "app=db", "-o", "json"]));
    assert_eq!(none["items"].as_array().expect("items").len(), 0);
    let by_field = k.ok(&[
        "get",
        "cm",
        "-n",
        &ns,
        "--field-selector",
        "metadata.name=web-config",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "configmap/web-config");

    // Changes: label (merge patch), a JSON patch, each bumping the resourceVersion.
    k.ok(&["label", "cm", "web-config", "-n", &ns, "tier=front"]);
    let json_patch = |ops: &str| {
        let args = [
            "patch",
            "cm",
            "web-config",
            "-n",
            &ns,
            "--type",
            "json",
            "-p",
            ops,
        ];
        k.run(&args)
    };
    let added = json_patch(r#"[{"op":"add","path":"/data/extra","value":"1"}]"#);
    assert!(added.ok, "{}", added.stderr);
    let cm = json(&k.ok(&["get", "cm", "web-config", "-n", &ns, "-o", "json"]));
    assert_eq!(cm["metadata"]["labels"]["tier"], "front");
    assert_eq!(cm["data"]["extra"], "1");
    let rv2: u64 = cm["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("decimal");
    assert!(rv2 > rv, "the resourceVersion went from {rv} to {rv2}");

    // The errors users run into.
    let duplicate = k.run_with(&["create", "-n", &ns, "-f", "-"], Some(CONFIGMAP));
    assert!(
        !duplicate.ok && duplicate.stderr.contains("already exists"),
        "{}",
        duplicate.stderr
    );
    let missing = k.fails(&["get", "cm", "nope", "-n", &ns]);
    assert!(
        missing.contains(r#"configmaps "nope" not found"#),
        "{missing}"
    );
    let invalid = k.run_with(
        &["create", "-n", &ns, "-f", "-"],
        Some(&CONFIGMAP.replace("web-config", "Bad_Name")),
    );
    assert!(
        !invalid.ok && invalid.stderr.contains("is invalid"),
        "{}",
        invalid.stderr
    );
    let stale = CONFIGMAP.replace(
        "  labels:",
        &format!("  resourceVersion: \"{rv}\"\n  labels:"),
    );
    let conflict = k.run_with(&["replace", "-n", &ns, "-f", "-"], Some(&stale));
    assert!(
        !conflict.ok && conflict.stderr.contains("the object has been modified"),
        "{}",
        conflict.stderr
    );
    let bad_patch = json_patch(r#"[{"op":"test","path":"/data/greeting","value":"bye"}]"#);
    assert!(!bad_patch.ok && !bad_patch.stderr.is_empty());
    let mismatch = DEPLOYMENT
        .replace("name: mismatch", "")
        .replace("metadata: {name: api}", "metadata: {name: mismatch}")
        .replace(
            "selector: {matchLabels: {app: api}}",
            "selector: {matchLabels: {app: other}}",
        );
    let refused = k.run_with(&["apply", "-n", &ns, "-f", "-"], Some(&mismatch));
    assert!(
        !refused.ok
            && refused
                .stderr
                .contains("`selector` does not match template `labels`"),
        "{}",
        refused.stderr
    );
    let typo = k.run_with(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&DEPLOYMENT.replace("replicas: 1", "replica: 1")),
    );
    assert!(
        !typo.ok && typo.stderr.contains(r#"unknown field "spec.replica""#),
        "{}",
        typo.stderr
    );
    let no_ns = k.run_with(
        &["apply", "-n", "does-not-exist", "-f", "-"],
        Some(CONFIGMAP),
    );
    assert!(
        !no_ns.ok
            && no_ns
                .stderr
                .contains(r#"namespaces "does-not-exist" not found"#),
        "{}",
        no_ns.stderr
    );

    // kubectl's typed commands send protobuf bodies (kubectl >= 1.32).
    k.ok(&[
        "create",
        "configmap",
        "typed",
        "-n",
        &ns,
        "--from-literal=a=b",
    ]);
    k.ok(&[
        "create",
        "secret",
        "generic",
        "typed",
        "-n",
        &ns,
        "--from-literal=password=s3cr3t",
    ]);
    k.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        &ns,
        "--image=nginx:1.27",
        "--replicas=0",
    ]);
    k.ok(&["create", "serviceaccount", "robot", "-n", &ns]);
    let secret = json(&k.ok(&["get", "secret", "typed", "-n", &ns, "-o", "json"]));
    assert_eq!(
        secret["data"]["password"], "czNjcjN0",
        "bytes travel base64-encoded"
    );
    let deployment = json(&k.ok(&["get", "deployment", "web", "-n", &ns, "-o", "json"]));
    assert_eq!(
        deployment["spec"]["replicas"], 0,
        "an explicit zero survives protobuf"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(deployment["metadata"]["generation"], 1);
    let typed = json(&k.ok(&["get", "cm", "typed", "-n", &ns, "-o", "json"]));
    assert_eq!(typed["data"]["a"], "b");
    // Deleting with typed DeleteOptions.
    k.ok(&["delete", "deployment", "web", "-n", &ns]);

    // Updates by strategic merge: apply of a changed manifest, set image, patch.
    let applied = k.run_with(&["apply", "-n", &ns, "-f", "-"], Some(DEPLOYMENT));
    assert!(applied.ok, "{}", applied.stderr);
    let changed = DEPLOYMENT
        .replace("nginx:1", "nginx:2")
        .replace(", {name: B, value: \"2\"}", "");
    let applied = k.run_with(&["apply", "-n", &ns, "-f", "-"], Some(&changed));
    assert!(
        applied.ok && applied.stdout.contains("configured"),
        "{}",
        applied.stderr
    );
    k.ok(&[
        "set",
        "image",
        "deployment/api",
        "-n",
        &ns,
        "sidecar=envoy:2",
    ]);
    k.ok(&[
        "patch",
        "deployment",
        "api",
        "-n",
        &ns,
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]);
    let d = json(&k.ok(&["get", "deployment", "api", "-n", &ns, "-o", "json"]));
    let containers = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx:2");
    assert_eq!(
        containers[0]["env"],
        serde_json::json!([{"name": "A", "value": "1"}]),
        "apply removed B"
    );
    assert_eq!(
        containers[1]["image"], "envoy:2",
        "set image kept the other container"
    );
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["strategy"]["type"], "RollingUpdate",
        "defaulted by the server"
    );
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][1]["imagePullPolicy"], "Always",
        "no tag at creation"
    );
    assert_eq!(
        d["metadata"]["generation"], 4,
        "three spec changes after the create"
    );

    // kubectl explain reads /openapi/v3.
    let explained = k.ok(&["explain", "deployment.spec.replicas"]);
    assert!(
        explained.contains("KIND:       Deployment") && explained.contains("replicas"),
        "{explained}"
    );

    // kubectl scale goes through the scale subresource.
    k.ok(&["scale", "deployment", "api", "-n", &ns, "--replicas=5"]);
    let d = json(&k.ok(&["get", "deployment", "api", "-n", &ns, "-o", "json"]));
    assert_eq!(d["spec"]["replicas"], 5);

    // kubectl get's columns come from the server's Tables.
    let table = k.ok(&["get", "deployment", "api", "-n", &ns]);
    assert!(
        table.contains("UP-TO-DATE") && table.contains("AVAILABLE"),
        "{table}"
    );
    let table = k.ok(&["get", "configmaps", "-n", &ns]);
    assert!(table.contains("DATA"), "{table}");

    // Bad input: a clear Status, nothing written.
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#,
        "x".repeat(4 << 20)
    );
    let raw = format!("/api/v1/namespaces/{ns}/configmaps");
    let scratch = tempfile::tempdir().expect("a directory for request bodies");
    let post_raw = |body: &str| {
        let path = scratch.path().join("body.json");
        std::fs::write(&path, body).expect("write the request body");
        k.fails(&[
            "create",
            "--raw",
            &raw,
            "-f",
            path.to_str().expect("utf-8 path"),
        ])
    };
    let too_large = post_raw(&big);
    assert!(
        too_large.contains("RequestEntityTooLarge") || too_large.contains("larger than the limit"),
        "{too_large}"
    );
    let malformed = post_raw("{not json");
    assert!(
        malformed.contains("BadRequest") || malformed.contains("not valid JSON"),
        "{malformed}"
    );
    let unknown = k.fails(&["get", "--raw", "/apis/nope.example.com/v1/things"]);
    assert!(
        unknown.contains("NotFound") || unknown.contains("could not find"),
        "{unknown}"
    );
    let names = k.ok(&["get", "cm", "-n", &ns, "-o", "name"]);
    assert!(
        !names.contains("configmap/big"),
        "a refused body was written: {names}"
    );

    // A watch sees the deletion.
    let mut watch = k
        .command(&[
            "get",
            "cm",
            "-n",
            &ns,
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
            "--request-timeout",
            "20s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubectl get --watch");
    // Lines as they come, so each step waits for the watch rather than for a fixed time.
    let stdout = watch.stdout.take().expect("piped stdout");
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line.replace(' ', "")).is_err() {
                return;
            }
        }
    });
    let wait_for = |event: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match seen.recv_timeout(left) {
                Ok(line) if line.contains(&format!(r#""type":"{event}""#)) => return,
                Ok(_) => {}
                Err(_) => panic!("the watch never showed {event}"),
            }
        }
    };
    wait_for("ADDED");
    k.ok(&["delete", "cm", "web-config", "-n", &ns]);
    wait_for("DELETED");
    let _ = watch.kill();
    let _ = watch.wait();
    let gone = k.fails(&["get", "cm", "web-config", "-n", &ns]);
    assert!(gone.contains("not found"));
}

/// A namespace held by a `spec.finalizers` entry (what the namespace controller clears):
/// deleting it leaves it `Terminating` and refuses new content with upstream's 403; only the
/// `finalize` subresource changes its finalizers, and clearing them lets it go.
fn namespace_finalizers(tenant: &Tenant, version: &str) {
    let k = tenant.kubectl(version);
    let ns = format!("held-{version}");
    k.ok(&["create", "namespace", &ns]);
    let created = json(&k.ok(&["get", "namespace", &ns, "-o", "json"]));
    assert_eq!(
        created["metadata"]["labels"]["kubernetes.io/metadata.name"],
        ns
    );
    assert_eq!(created["status"]["phase"], "Active");

    let finalize = |finalizers: Value| {
        let mut body = json(&k.ok(&["get", "namespace", &ns, "-o", "json"]));
        body["spec"]["finalizers"] = finalizers;
        let path = format!("/api/v1/namespaces/{ns}/finalize");
        let out = k.run_with(
            &["replace", "--raw", &path, "-f", "-"],
            Some(&body.to_string()),
        );
        assert!(out.ok, "{}", out.stderr);
    };
    // The main endpoint keeps the finalizers as they are; the subresource sets them.
    k.ok(&[
        "patch",
        "namespace",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"finalizers":["example.com/hold"]}}"#,
    ]);
    let patched = json(&k.ok(&["get", "namespace", &ns, "-o", "json"]));
    assert_eq!(
        patched["spec"]["finalizers"],
        serde_json::json!(["kubernetes"]),
        "{patched}"
    );
    finalize(serde_json::json!(["example.com/hold"]));

    k.ok(&["delete", "namespace", &ns, "--wait=false"]);
    let held = json(&k.ok(&["get", "namespace", &ns, "-o", "json"]));
    assert_eq!(held["status"]["phase"], "Terminating");
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let refused = k.fails(&["create", "configmap", "late", "-n", &ns]);
    assert!(
        refused.contains("forbidden")
            && refused.contains(&format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )),
        "{refused}"
    );

    finalize(serde_json::json!([]));
    let gone = k.fails(&["get", "namespace", &ns]);
    assert!(gone.contains("not found"), "{gone}");

    // Deleting a namespace deletes its content first (the namespace controller), then the
    // namespace; kubectl waits for both.
    let doomed = format!("doomed-{version}");
    k.ok(&["create", "namespace", &doomed]);
    let created = json(&k.ok(&["get", "namespace", &doomed, "-o", "json"]));
    assert_eq!(
        created["spec"]["finalizers"],
        serde_json::json!(["kubernetes"])
    );
    k.ok(&["create", "configmap", "inside", "-n", &doomed]);
    k.ok(&["create", "serviceaccount", "inside", "-n", &doomed]);
    k.ok(&["delete", "namespace", &doomed, "--timeout=30s"]);
    let gone = k.fails(&["get", "namespace", &doomed]);
    assert!(gone.contains("not found"), "{gone}");
    k.ok(&["create", "namespace", &doomed]);
    let left = k.ok(&[
        "get",
        "configmaps,serviceaccounts",
        "-n",
        &doomed,
        "-o",
        "name",
    ]);
    assert!(
        !left.contains("/inside"),
        "content outlived its namespace: {left}"
    );

    // Every namespace gets a `default` ServiceAccount and the tenant's CA in
    // `kube-root-ca.crt`, again if they are deleted.
    let eventually = |args: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let run = k.run(args);
            if run.ok {
                return run.stdout;
            }
            assert!(Instant::now() < deadline, "{args:?}: {}", run.stderr);
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    eventually(&["get", "serviceaccount", "default", "-n", &doomed]);
    let ca = eventually(&[
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        &doomed,
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    k.ok(&["delete", "serviceaccount", "default", "-n", &doomed]);
    eventually(&["get", "serviceaccount", "default", "-n", &doomed]);

    let immortal = k.fails(&["delete", "namespace", "kube-system"]);
    assert!(
        immortal.contains("this namespace may not be deleted"),
        "{immortal}"
    );
}

/// `kubectl create token` (a protobuf TokenRequest): the token authenticates as the service
/// account until the account is deleted; a life under ten minutes is refused with 422.
fn service_account_tokens(tenant: &Tenant, version: &str) {
    let k = tenant.kubectl(version);
    let sa = format!("robot-{version}");
    k.ok(&["create", "serviceaccount", &sa]);
    let token = k
        .ok(&["create", "token", &sa, "--duration=20m"])
        .trim()
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // A kubeconfig with nothing but the token: a least-privilege credential.
    let (_scratch, with_token) =
        vcluster_tests::kubectl_with_token(version, tenant.kubeconfig(), &token);
    let user = format!("system:serviceaccount:default:{sa}");
    assert!(with_token.ok(&["auth", "whoami"]).contains(&user));
    let forbidden = with_token.fails(&["get", "namespaces"]);
    assert!(
        forbidden.contains(&format!(
            r#"namespaces is forbidden: User "{user}" cannot list resource "namespaces" in API group "" at the cluster scope"#
        )),
        "{forbidden}"
    );
    // `can-i` answers "no" with exit code 1.
    let no = with_token.run(&["auth", "can-i", "list", "configmaps"]);
    assert_eq!((no.ok, no.stdout.trim()), (false, "no"), "{}", no.stderr);

    // Bound to `view` in its namespace: it reads there, and nothing more.
    k.ok(&[
        "create",
        "rolebinding",
        &format!("{sa}-view"),
        "--clusterrole=view",
        &format!("--serviceaccount=default:{sa}"),
        "-n",
        "default",
    ]);
    with_token.ok(&["get", "configmaps", "-n", "default"]);
    assert_eq!(
        with_token
            .ok(&["auth", "can-i", "list", "configmaps"])
            .trim(),
        "yes"
    );
    let secrets = with_token.fails(&["get", "secrets", "-n", "default"]);
    assert!(secrets.contains("forbidden"), "{secrets}");
    let elsewhere = with_token.fails(&["get", "configmaps", "-n", "kube-system"]);
    assert!(elsewhere.contains("forbidden"), "{elsewhere}");
    let written = with_token.fails(&["create", "configmap", &format!("by-{sa}")]);
    assert!(written.contains("forbidden"), "{written}");
    let listed = with_token.ok(&["auth", "can-i", "--list", "-n", "default"]);
    assert!(
        listed.contains("configmaps") && listed.contains("[get list watch]"),
        "{listed}"
    );
    assert!(!listed.contains("secrets "), "{listed}");
    assert!(
        !k.ok(&["get", "configmaps", "-o", "name"])
            .contains(&format!("by-{sa}")),
        "a forbidden create wrote"
    );

    // Verifiable by others: the issuer's discovery document and keys (readable with the
    // token itself), and a TokenReview.
    let discovery = json(&with_token.ok(&["get", "--raw", "/.well-known/openid-configuration"]));
    let issuer = discovery["issuer"].as_str().expect("issuer").to_owned();
    assert!(issuer.starts_with("https://"), "{discovery}");
    let jwks = json(&with_token.ok(&["get", "--raw", "/openid/v1/jwks"]));
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    let review = format!(
        "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n"
    );
    let reviewed = k.run_with(&["create", "-f", "-", "-o", "json"], Some(&review));
    assert!(reviewed.ok, "{}", reviewed.stderr);
    let reviewed = json(&reviewed.stdout);
    assert_eq!(reviewed["status"]["authenticated"], true, "{reviewed}");
    assert_eq!(reviewed["status"]["user"]["username"], user.as_str());
    assert_eq!(reviewed["status"]["audiences"][0], issuer.as_str());

    // Admin of a namespace: it may bind roles there, but not grant what it does not hold.
    let owned = format!("owned-{version}");
    k.ok(&["create", "namespace", &owned]);
    k.ok(&[
        "create",
        "rolebinding",
        &format!("{sa}-admin"),
        "--clusterrole=admin",
        &format!("--serviceaccount=default:{sa}"),
        "-n",
        &owned,
    ]);
    with_token.ok(&[
        "create",
        "rolebinding",
        "bob-view",
        "--clusterrole=view",
        "--user=bob",
        "-n",
        &owned,
    ]);
    let escalation = with_token.fails(&[
        "create",
        "rolebinding",
        "self-admin",
        "--clusterrole=cluster-admin",
        &format!("--serviceaccount=default:{sa}"),
        "-n",
        &owned,
    ]);
    assert!(
        escalation.contains("is attempting to grant RBAC permissions not currently held"),
        "{escalation}"
    );

    // Impersonation: the admin may act as the account; the account may not act as others.
    let as_account = k.ok(&[
        "get",
        "configmaps",
        "-n",
        "default",
        &format!("--as={user}"),
        "-o",
        "name",
    ]);
    assert!(!as_account.contains("forbidden"));
    let as_account = k.fails(&["get", "secrets", "-n", "default", &format!("--as={user}")]);
    assert!(
        as_account.contains(&format!(r#"User "{user}" cannot list resource "secrets""#)),
        "{as_account}"
    );
    let escalate = with_token.fails(&[
        "get",
        "namespaces",
        "--as=admin",
        "--as-group=system:masters",
    ]);
    assert!(
        escalate.contains(&format!(
            r#"users "admin" is forbidden: User "{user}" cannot impersonate resource "users""#
        )),
        "{escalate}"
    );

    let short = k.fails(&["create", "token", &sa, "--duration=5m"]);
    assert!(
        short.contains("may not specify a duration less than 10 minutes"),
        "{short}"
    );
    let missing = k.fails(&["create", "token", "nobody"]);
    assert!(missing.contains("not found"), "{missing}");

    k.ok(&["delete", "serviceaccount", &sa]);
    let revoked = with_token.fails(&["get", "configmaps", "-n", "default"]);
    assert!(
        revoked.contains("Unauthorized") || revoked.contains("must be logged in"),
        "{revoked}"
    );
}

/// `kubectl apply --server-side`: fields owned per manager, a conflict with another
/// manager's value, `--force-conflicts` taking the field over, and fields a manager stops
/// applying removed only where no one else owns them.
fn server_side_apply(tenant: &Tenant, version: &str) {
    let k = tenant.kubectl(version);
    let name = format!("ssa-{version}");
    let config = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{data}")
    };
    let apply = |manager: &str, data: &str, extra: &[&str]| {
        let mut args = vec![
            "apply",
            "--server-side",
            "--field-manager",
            manager,
            "-f",
            "-",
        ];
        args.extend_from_slice(extra);
        k.run_with(&args, Some(&config(data)))
    };
    let first = apply("alice", "  a: \"1\"\n  b: \"1\"\n", &[]);
    assert!(
        first.ok && first.stdout.contains("serverside-applied"),
        "{}",
        first.stderr
    );
    let conflict = apply("bob", "  a: \"2\"\n", &[]);
    assert!(!conflict.ok);
    assert!(
        conflict.stderr.contains(r#"conflict with "alice""#) && conflict.stderr.contains(".data.a"),
        "{}",
        conflict.stderr
    );
    let forced = apply("bob", "  a: \"2\"\n", &["--force-conflicts"]);
    assert!(forced.ok, "{}", forced.stderr);
    // alice stops applying a (now bob's) and b (hers alone): b goes, a stays.
    let again = apply("alice", "  c: \"3\"\n", &[]);
    assert!(again.ok, "{}", again.stderr);
    let cm = json(&k.ok(&["get", "cm", &name, "-o", "json", "--show-managed-fields"]));
    assert_eq!(cm["data"], serde_json::json!({"a": "2", "c": "3"}));
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|m| m["manager"].as_str().unwrap_or_default())
        .collect();
    assert!(
        managers.contains(&"alice") && managers.contains(&"bob"),
        "{managers:?}"
    );
    // Client-side apply keeps working beside it.
    let client_side = k.run_with(
        &["apply", "-f", "-"],
        Some(&config("  a: \"2\"\n  c: \"3\"\n  d: \"4\"\n")),
    );
    assert!(client_side.ok, "{}", client_side.stderr);
    let cm = json(&k.ok(&["get", "cm", &name, "-o", "json"]));
    assert_eq!(cm["data"]["d"], "4");
}

/// A server of its own (it is restarted): the default tenant's objects outlive the process,
/// and the kubeconfig it writes anew works.
#[test]
fn restarting_keeps_the_objects_and_the_kubeconfig_works_again() {
    let mut up = Up::start(StoreKind::Embedded, &[], 0);
    let k = Kubectl::new("v36", up.kubeconfig());
    let applied = k.run_with(&["apply", "-f", "-"], Some(CONFIGMAP));
    assert!(applied.ok, "{}", applied.stderr);
    up.restart();
    let cm = json(&k.ok(&["get", "cm", "web-config", "-o", "json"]));
    assert_eq!(cm["data"]["greeting"], "hello");
}

/// `vcluster up --tenant a --tenant b`: a kubeconfig per tenant, each reaching its own
/// tenant by SNI; `<data-dir>/kubeconfig` reaches the first without SNI; neither sees the
/// other's objects, nor its nodes; names that are not DNS labels are refused (exit 64).
#[test]
fn tenants_given_with_dash_dash_tenant_are_served_side_by_side() {
    let up = Up::start(StoreKind::Embedded, &["first", "second"], 1);
    let (first, second) = (up.tenant("first"), up.tenant("second"));
    let kubeconfig = std::fs::read_to_string(first.kubeconfig()).expect("first's kubeconfig");
    assert!(
        kubeconfig.contains("tls-server-name: first.vcluster.local"),
        "{kubeconfig}"
    );
    let k1 = first.kubectl("v36");
    let k2 = second.kubectl("v36");
    let applied = k1.run_with(&["apply", "-f", "-"], Some(CONFIGMAP));
    assert!(applied.ok, "{}", applied.stderr);
    let hidden = k2.fails(&["get", "cm", "web-config"]);
    assert!(hidden.contains("not found"), "{hidden}");
    let by_default = Kubectl::new("v36", up.kubeconfig());
    assert_eq!(
        json(&by_default.ok(&["get", "cm", "web-config", "-o", "json"]))["data"]["greeting"],
        "hello"
    );
    for k in [&k1, &k2] {
        let nodes = k.ok(&["get", "nodes", "-o", "name"]);
        assert_eq!(nodes.trim(), "node/sim-0", "one simulated node per tenant");
    }

    let refused = std::process::Command::new(vcluster_tests::vcluster_bin())
        .args([
            "up",
            "--tenant",
            "first",
            "--tenant",
            "Not_A_Label",
            "--data-dir",
        ])
        .arg(up.dir().join("refused"))
        .output()
        .expect("run vcluster up");
    assert_eq!(refused.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not a DNS label"), "{stderr}");
}
