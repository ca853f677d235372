//! Idle connections never take the process down: `vcluster up` with 256 open files (as
//! `ulimit -n 256` gives it) under 300 plain TCP connections that never say a word keeps
//! serving another client, and stays up after they go.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use vcluster_testkit::clients::Kubectl;
use vcluster_tests::Up;

/// A plain TCP connection to `port` from the loopback address `source`, so that the
/// attacker is another source than the client it must not starve.
fn connect_from(source: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let stream = socket
            .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await?;
        stream.into_std()
    })
}

#[test]
fn plain_connections_past_the_open_file_limit_do_not_stop_the_server() {
    let mut up = Up::start_with_open_files(256);
    let k = Kubectl::new("v36", up.kubeconfig());
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let held: Vec<TcpStream> = (0..300)
        .filter_map(|_| connect_from(attacker, up.port()).ok())
        .collect();
    assert!(
        held.len() >= 256,
        "only {} connections were made",
        held.len()
    );
    // Give the server time to accept (and, unfixed, to run out of descriptors).
    std::thread::sleep(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(5);
    let answered = loop {
        let run = k.run(&["get", "--raw", "/readyz"]);
        if run.ok || Instant::now() > deadline {
            break run;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        answered.ok,
        "another client was not answered under 300 idle connections: {}",
        answered.stderr
    );
    assert!(up.is_running(), "the server stopped");
    drop(held);
    assert_eq!(k.ok(&["get", "--raw", "/readyz"]), "ok");
    assert!(
        up.is_running(),
        "the server stopped after the connections went"
    );
}
