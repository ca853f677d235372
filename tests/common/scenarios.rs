//! One test per scenario and store, the scenarios of a store sharing one server.

use vcluster_testkit::clients::KUBECTL_VERSIONS;

use crate::Tenant;

/// Makes, for each listed scenario, one test per store: `<scenario>::on_etcd` and
/// `<scenario>::on_the_embedded_store`. Each scenario runs in a tenant of its own, named
/// after it, of the store's one `vcluster up` (started with `--no-host
/// --tenant-simulated-nodes` as given, so the tenants run their own pods, and a `--tenant`
/// for every scenario), which the first of the store's tests to run starts and
/// which is killed when the test process exits. A scenario may therefore assume the tenant
/// is its own: only its objects, only its nodes.
///
/// The scenarios are grouped by how they are run: `runner: [scenario, ...]` calls
/// `runner(&tenant, scenario)`, a function in scope of the caller ([`directly`],
/// [`with_each_kubectl`], [`on_tokio`] or one of the test file's own). `once_up: f` (after
/// the node count) calls `f(&up)` once a server is up, before any test uses it: a scenario
/// that waits for time to pass starts its clock there.
///
/// Tests start in the order of their names, so the two stores' tests of a scenario start
/// together, and both servers at once.
///
/// `alone, simulated_nodes: N; runner: [scenario, ...]` (a second invocation) gives each
/// test of those scenarios a server of its own instead, for a scenario whose load would slow
/// down every tenant of a shared one.
///
/// ```ignore
/// vcluster_tests::scenarios! {
///     simulated_nodes: 0;
///     with_each_kubectl: [first_steps, server_side_apply],
/// }
/// ```
///
/// `host_nodes: N` in place of `simulated_nodes: N` starts each store's server with a host
/// cluster of its own (`Up::start_on_host`, N simulated nodes on the host, none in the
/// tenants): the syncer's suites. `hosts: ["eu", "us"], host_nodes: N` starts it with
/// several (`Up::start_on_hosts`).
#[macro_export]
macro_rules! scenarios {
    (
        simulated_nodes: $nodes:expr $(, once_up: $once_up:ident)?;
        $( $run:ident: [ $($scenario:ident),+ $(,)? ] ),+ $(,)?
    ) => {
        $crate::scenarios! {
            @shared |store, tenants| $crate::Up::start(store, tenants, $nodes), [$($once_up)?];
            $( $run: [ $($scenario),+ ] ),+
        }
    };
    (
        host_nodes: $nodes:expr $(, once_up: $once_up:ident)?;
        $( $run:ident: [ $($scenario:ident),+ $(,)? ] ),+ $(,)?
    ) => {
        $crate::scenarios! {
            @shared |store, tenants| $crate::Up::start_on_host(store, tenants, $nodes),
                [$($once_up)?];
            $( $run: [ $($scenario),+ ] ),+
        }
    };
    (
        hosts: [$($host:literal),+ $(,)?], host_nodes: $nodes:expr $(, once_up: $once_up:ident)?;
        $( $run:ident: [ $($scenario:ident),+ $(,)? ] ),+ $(,)?
    ) => {
        $crate::scenarios! {
            @shared |store, tenants| $crate::Up::start_on_hosts(store, tenants, &[$($host),+], $nodes, &[]),
                [$($once_up)?];
            $( $run: [ $($scenario),+ ] ),+
        }
    };
    (
        @shared $start:expr, [$($once_up:ident)?];
        $( $run:ident: [ $($scenario:ident),+ ] ),+
    ) => {
        /// One tenant per scenario, in each store's server.
        const TENANTS: &[&str] = &[$($(stringify!($scenario)),+),+];

        /// Each store's server, shared by its tests.
        static ON_ETCD: ::std::sync::LazyLock<$crate::Up> = ::std::sync::LazyLock::new(|| {
            let start = $start;
            let up = start($crate::StoreKind::Etcd, TENANTS);
            $($once_up(&up);)?
            up
        });
        static ON_THE_EMBEDDED_STORE: ::std::sync::LazyLock<$crate::Up> =
            ::std::sync::LazyLock::new(|| {
                let start = $start;
                let up = start($crate::StoreKind::Embedded, TENANTS);
                $($once_up(&up);)?
                up
            });

        $($(
            mod $scenario {
                #[test]
                fn on_etcd() {
                    super::$run(&super::ON_ETCD.tenant(stringify!($scenario)), super::$scenario);
                }

                #[test]
                fn on_the_embedded_store() {
                    super::$run(
                        &super::ON_THE_EMBEDDED_STORE.tenant(stringify!($scenario)),
                        super::$scenario,
                    );
                }
            }
        )+)+
    };
    (
        alone, simulated_nodes: $nodes:expr;
        $( $run:ident: [ $($scenario:ident),+ $(,)? ] ),+ $(,)?
    ) => {
        $($(
            mod $scenario {
                fn alone(store: $crate::StoreKind) {
                    let up = $crate::Up::start(store, &[stringify!($scenario)], $nodes);
                    super::$run(&up.tenant(stringify!($scenario)), super::$scenario);
                }

                #[test]
                fn on_etcd() {
                    alone($crate::StoreKind::Etcd);
                }

                #[test]
                fn on_the_embedded_store() {
                    alone($crate::StoreKind::Embedded);
                }
            }
        )+)+
    };
}

/// Runs a scenario.
pub fn directly(tenant: &Tenant, scenario: fn(&Tenant)) {
    scenario(tenant);
}

/// Runs a scenario with each kubectl version (1.33, then 1.36) in the same tenant.
pub fn with_each_kubectl(tenant: &Tenant, scenario: fn(&Tenant, &str)) {
    for version in KUBECTL_VERSIONS {
        scenario(tenant, version);
    }
}

/// Runs an async scenario on a tokio runtime of two worker threads.
pub fn on_tokio(tenant: &Tenant, scenario: impl AsyncFnOnce(&Tenant)) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(scenario(tenant));
}
