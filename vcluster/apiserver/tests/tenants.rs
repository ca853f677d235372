//! Many tenants in one process, reached by SNI and by path prefix, each blind to the others
//! and refusing their credentials. Driven by real kubectl.

mod common;

use common::Served;
use vcluster_testkit::clients::{Kubectl, kubectl_bin};

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: secret-plans
data:
  owner: a
";

/// Puts the credential of one kubeconfig into the other's user entry: the credential of one
/// tenant presented to another.
fn with_user_of(target: &str, source: &str) -> String {
    let credential = |text: &str| -> String {
        let users = text.find("users:\n").expect("users section");
        let start = users + text[users..].find("  user:\n").expect("user entry");
        let end = text.find("contexts:\n").expect("contexts section");
        text[start..end].to_owned()
    };
    target.replace(&credential(target), &credential(source))
}

fn assert_unauthorized(refused: &str) {
    assert!(
        refused.contains("Unauthorized") || refused.contains("credentials"),
        "{refused}"
    );
}

#[test]
fn tenants_are_isolated_and_reject_each_others_credentials() {
    let (served, opened) = Served::start(&["a", "b"]);
    let (a, b) = (&opened[0], &opened[1]);
    let (runtime, tenants, server) = (&served.runtime, &served.tenants, served.server.as_str());
    let write = |name: &str, text: &str| served.write(name, text);
    // By SNI: the kubeconfigs name their tenant's host.
    let a_config = a
        .admin_kubeconfig(tenants, server, true)
        .expect("kubeconfig a");
    let b_config = b
        .admin_kubeconfig(tenants, server, true)
        .expect("kubeconfig b");
    let ka = Kubectl::new("v36", write("a", &a_config));
    let kb = Kubectl::new("v36", write("b", &b_config));

    let created = ka.run_with(&["apply", "-f", "-"], Some(CONFIGMAP));
    assert!(created.ok, "{}", created.stderr);
    assert!(
        ka.ok(&["get", "cm", "secret-plans"])
            .contains("secret-plans")
    );
    let hidden = kb.fails(&["get", "cm", "secret-plans"]);
    assert!(
        hidden.contains("not found"),
        "tenant b saw tenant a's object: {hidden}"
    );
    assert!(!kb.ok(&["get", "cm", "-A"]).contains("secret-plans"));

    // The two kubeconfigs merge as kubectl merges them: each tenant's cluster, context and
    // user keep their own entries, and the merged file reaches either tenant by context.
    let flattened = std::process::Command::new(kubectl_bin("v36"))
        .args(["config", "view", "--flatten"])
        .env(
            "KUBECONFIG",
            format!("{}:{}", ka.kubeconfig.display(), kb.kubeconfig.display()),
        )
        .output()
        .expect("kubectl config view");
    assert!(
        flattened.status.success(),
        "{}",
        String::from_utf8_lossy(&flattened.stderr)
    );
    let merged = Kubectl::new(
        "v36",
        write("merged", &String::from_utf8_lossy(&flattened.stdout)),
    );
    let entries = merged.ok(&[
        "config",
        "view",
        "-o",
        "jsonpath={.clusters[*].name} / {.contexts[*].name} / {.users[*].name} / {.current-context}",
    ]);
    assert_eq!(
        entries,
        "vcluster_a vcluster_b / vcluster_a vcluster_b / vcluster_a_admin vcluster_b_admin / vcluster_a"
    );
    let plans = merged.ok(&["--context", "vcluster_a", "get", "cm", "secret-plans"]);
    assert!(plans.contains("secret-plans"), "{plans}");
    let hidden = merged.fails(&["--context", "vcluster_b", "get", "cm", "secret-plans"]);
    assert!(hidden.contains("not found"), "{hidden}");

    // Tenant a's client certificate, presented to tenant b: 401.
    let stolen = Kubectl::new("v36", write("a-to-b", &with_user_of(&b_config, &a_config)));
    assert_unauthorized(&stolen.fails(&["get", "cm", "-A"]));

    // Bearer tokens: a's token works on a and is refused by b.
    let a_token = a.admin_token_kubeconfig(tenants, server, true);
    let b_token = b.admin_token_kubeconfig(tenants, server, true);
    let ka_token = Kubectl::new("v36", write("a-token", &a_token));
    assert!(ka_token.ok(&["get", "cm"]).contains("secret-plans"));
    let stolen_token = Kubectl::new(
        "v36",
        write("a-token-to-b", &with_user_of(&b_token, &a_token)),
    );
    assert_unauthorized(&stolen_token.fails(&["get", "cm"]));

    // A service-account token of a (TokenRequest), presented to b — where an account of the
    // same name exists — is refused: only the signing tenant's key is trusted.
    ka.ok(&["create", "serviceaccount", "robot"]);
    kb.ok(&["create", "serviceaccount", "robot"]);
    let sa_token = ka.ok(&["create", "token", "robot"]).trim().to_owned();
    let a_robot = a_token.replace(a.identity.admin_token(), &sa_token);
    let ka_robot = Kubectl::new("v36", write("a-robot", &a_robot));
    let whoami = ka_robot.ok(&["auth", "whoami"]);
    assert!(
        whoami.contains("system:serviceaccount:default:robot"),
        "{whoami}"
    );
    let stolen_robot = Kubectl::new(
        "v36",
        write("a-robot-to-b", &with_user_of(&b_token, &a_robot)),
    );
    assert_unauthorized(&stolen_robot.fails(&["auth", "whoami"]));

    // A's custom resource types are a's alone.
    let crd = common::open_crd("a.example.com", "plans", "Plan");
    let created = ka.run_with(&["apply", "-f", "-"], Some(&crd));
    assert!(created.ok, "{}", created.stderr);
    assert!(ka.ok(&["api-resources"]).contains("a.example.com"));
    assert!(!kb.ok(&["api-resources"]).contains("a.example.com"));
    let unknown = kb.fails(&["get", "plans.a.example.com"]);
    assert!(
        unknown.contains("doesn't have a resource type"),
        "{unknown}"
    );
    assert!(!kb.ok(&["get", "crds"]).contains("plans.a.example.com"));

    // A's roles are a's alone: alice, who may read everything in a, may read nothing in b.
    ka.ok(&[
        "create",
        "clusterrolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
    ]);
    let alice_of = |tenant: &vcluster_apiserver::Tenant| {
        let (cert, key) = tenant
            .identity
            .issue_client("alice", &[])
            .expect("certificate");
        let host = tenants.host(&tenant.name);
        vcluster_apiserver::Kubeconfig {
            cluster: &tenant.name,
            server,
            tls_server_name: Some(&host),
            ca_pem: tenant.identity.ca_cert_pem(),
            user: "alice",
            client_cert_pem: Some(&cert),
            client_key_pem: Some(&key),
            token: None,
        }
        .render()
    };
    let alice_a = Kubectl::new("v36", write("alice-a", &alice_of(a)));
    assert!(alice_a.ok(&["get", "cm"]).contains("secret-plans"));
    let alice_b = Kubectl::new("v36", write("alice-b", &alice_of(b)));
    let refused = alice_b.fails(&["get", "cm"]);
    assert!(
        refused.contains(r#"User "alice" cannot list resource "configmaps""#),
        "{refused}"
    );

    // By path prefix: /clusters/b reaches b; with a's credential it is refused.
    let b_by_path = b_config.replace(server, &format!("{server}/clusters/b"));
    let kb_path = Kubectl::new("v36", write("b-path", &b_by_path));
    assert!(kb_path.ok(&["get", "namespaces"]).contains("kube-system"));
    let a_by_path = with_user_of(&b_by_path, &a_config);
    assert_unauthorized(
        &Kubectl::new("v36", write("a-path", &a_by_path)).fails(&["get", "namespaces"]),
    );
    // A path naming another tenant than the SNI host does is not served.
    let mixed = b_config.replace(server, &format!("{server}/clusters/a"));
    let refused = Kubectl::new("v36", write("mixed", &mixed)).fails(&["get", "namespaces"]);
    assert!(!refused.is_empty());

    // A tenant created while the server runs gets its namespaces' default objects too: its
    // pods run as `default`, and see its own CA.
    let c = runtime
        .block_on(tenants.open_or_create("c"))
        .expect("tenant c");
    let c_config = c
        .admin_kubeconfig(tenants, server, true)
        .expect("kubeconfig c");
    let kc = Kubectl::new("v36", write("c", &c_config));
    kc.ok(&["run", "first", "--image=nginx"]);
    let ca = kc.eventually(
        &[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
        |out| !out.is_empty(),
    );
    assert_eq!(ca.trim(), c.identity.ca_cert_pem().trim());
}
