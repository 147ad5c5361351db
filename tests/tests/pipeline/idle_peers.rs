//! What a peer costs the driver: 2,000 TCP connections opened to its gRPC port that never send a
//! byte do not stop a running job, and the driver closes every one of them.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use weir_tests::job::{JobFixture, id_counts};
use weir_tests::kafka;

const IDLE: usize = 2_000;
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn two_thousand_silent_connections_are_closed_and_the_job_goes_on() {
    weir_common::limits::raise_open_files();
    let mut job = JobFixture::new("idle-peers", 2, "").await;
    let input = job.input.clone();
    let producer = tokio::spawn(async move {
        kafka::produce_paced(input, 2, 10_000, Duration::from_secs(25), Duration::from_millis(100))
            .await
    });
    job.start_driver();
    job.start_executor("ex-1");
    job.supervisor.wait_for_log("driver", "Batch committed", LIMIT).await;

    let address = format!("127.0.0.1:{}", job.grpc_port);
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|n| TcpStream::connect(&address).unwrap_or_else(|e| panic!("connection {n}: {e}")))
        .collect();
    let opened = Instant::now();
    let before = job.committed_records(&job.input.clone()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = job.committed_records(&job.input.clone()).await;
    assert!(during > before, "no batch committed with {IDLE} silent connections open");

    // Every one is closed by the driver (end of stream or a reset) soon after its deadline.
    let closed = tokio::task::spawn_blocking(move || {
        let by = std::time::Instant::now() + Duration::from_secs(30);
        idle.into_iter().map(|conn| closed_by_peer(conn, by)).filter(|&closed| closed).count()
    })
    .await
    .unwrap();
    let took = opened.elapsed();
    assert_eq!(closed, IDLE, "connections the driver left open");
    assert!(took < Duration::from_secs(40), "closing them took {took:?}");
    println!("{IDLE} silent connections closed {:.1} s after they were opened", took.as_secs_f64());

    let produced = producer.await.unwrap().0;
    job.wait_committed(&job.input.clone(), produced.len() as i64, LIMIT).await;
    assert!(job.supervisor.is_running("driver"), "the driver is still running");
    let counts = id_counts(&kafka::read_committed(&job.output).await);
    assert_eq!(counts.len(), produced.len(), "every record arrived");
}

/// Whether the other end closes `conn` by `by`. The driver speaks first (its HTTP/2 settings),
/// so everything it sends is read, up to the end of the stream or a reset.
fn closed_by_peer(mut conn: TcpStream, by: Instant) -> bool {
    let mut buffer = [0u8; 1024];
    loop {
        let left = by.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        conn.set_read_timeout(Some(left)).unwrap();
        match conn.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                use std::io::ErrorKind::{TimedOut, WouldBlock};
                return !matches!(e.kind(), WouldBlock | TimedOut);
            }
        }
    }
}
