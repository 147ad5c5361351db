//! An executor does not trust its driver further than it must. A fake driver (a gRPC server in
//! this test, speaking Weir's protocol) hands the real `weir-executor` binary tasks a real driver
//! never would: a topic name that climbs out of the file sink's directory, a config whose Kafka
//! properties load a library, and a welcome for another job. The executor refuses each, says why,
//! and writes nothing.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};
use weir_proto::v1 as pb;
use weir_proto::v1::driver_server::{Driver, DriverServer};
use weir_tests::binaries;
use weir_tests::names::TestNames;
use weir_tests::services;
use weir_tests::supervisor::Supervisor;

/// Answers every attach with `welcome` and `assign`, and passes on what the executor sends.
struct FakeDriver {
    welcome: pb::Welcome,
    assign: pb::AssignTask,
    replies: mpsc::UnboundedSender<pb::ExecutorMessage>,
}

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::DriverMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Driver for FakeDriver {
    type AttachStream = Outbound;

    async fn attach(
        &self,
        request: Request<Streaming<pb::ExecutorMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let mut inbound = request.into_inner();
        let replies = self.replies.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let _ = replies.send(message);
            }
        });
        let kinds = [
            pb::driver_message::Kind::Welcome(self.welcome.clone()),
            pb::driver_message::Kind::Assign(self.assign.clone()),
        ];
        let messages = kinds.map(|kind| Ok(pb::DriverMessage { generation: 1, kind: Some(kind) }));
        Ok(Response::new(futures::stream::iter(messages).chain(futures::stream::pending()).boxed()))
    }
}

/// Runs the executor against a fake driver that sends `config`, for job `welcome_job`, and a
/// task over `topic`; returns the executor's first task report (or `None` within 20 s) and its
/// log.
async fn run(
    names: &TestNames,
    welcome_job: &str,
    config: &str,
    topic: &str,
) -> (Option<pb::executor_message::Kind>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (replies, mut reports) = mpsc::unbounded_channel();
    let driver = FakeDriver {
        welcome: pb::Welcome {
            protocol_version: weir_common::protocol::PROTOCOL_VERSION,
            job: welcome_job.to_owned(),
            driver_id: "fake".into(),
            config_toml: config.to_owned(),
        },
        assign: pb::AssignTask {
            task: Some(pb::TaskId { batch_id: 1, lane: 0, attempt: 0 }),
            ranges: vec![pb::OffsetRange {
                topic: topic.to_owned(),
                partition: 0,
                from: 0,
                until: 10,
            }],
        },
        replies,
    };
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DriverServer::new(driver))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut supervisor = Supervisor::new(&names.job);
    let mut command = std::process::Command::new(binaries::path("weir-executor"));
    command.args(["--job", &names.job, "--driver", &url, "--id", "ex-1"]);
    supervisor.spawn("ex-1", command);
    let report = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = reports.recv().await {
            match message.kind {
                Some(kind @ pb::executor_message::Kind::Failed(_))
                | Some(kind @ pb::executor_message::Kind::Succeeded(_)) => return Some(kind),
                _ => {}
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let log = supervisor.log("ex-1");
    server.abort();
    (report, log)
}

fn config(names: &TestNames, sink: &str, source_kafka: &str) -> String {
    format!(
        "[job]\nname = \"{job}\"\n[source]\nbrokers = \"{brokers}\"\ntopics = [\"{topic}\"]\n\
         {source_kafka}\n[sink]\n{sink}\n",
        job = names.job,
        brokers = services::ensure().kafka_brokers,
        topic = names.topic("in"),
    )
}

fn failure(report: Option<pb::executor_message::Kind>, log: &str) -> pb::TaskFailed {
    match report {
        Some(pb::executor_message::Kind::Failed(failed)) => failed,
        other => panic!("expected a failed task, got {other:?}; the executor's log:\n{log}"),
    }
}

#[tokio::test]
async fn a_topic_name_that_climbs_out_of_the_file_sinks_directory_is_refused() {
    let names = TestNames::new("untrusted-topic");
    let base = std::env::temp_dir().join(&names.job);
    let dir = base.join("out");
    let sink =
        format!("type = \"file\"\npath = \"{}\"\nguarantee = \"exactly-once\"", dir.display());
    let escape = format!("../../{}-escaped", names.job);
    let (report, log) = run(&names, &names.job, &config(&names, &sink, ""), &escape).await;
    let failed = failure(report, &log);
    assert!(failed.message.contains("is not a Kafka topic name"), "{}", failed.message);
    assert_eq!(failed.kind(), pb::FailureKind::Config, "refused, not retried");
    let outside = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(&format!("{}-escaped", names.job)))
        .count();
    assert_eq!(outside, 0, "nothing written outside {}", dir.display());
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test]
async fn kafka_properties_that_load_code_are_refused_without_the_executors_flag() {
    let names = TestNames::new("untrusted-plugin");
    let library = std::env::temp_dir().join(format!("{}-plugin.so", names.job));
    let source_kafka =
        format!("[source.kafka]\n\"plugin.library.paths\" = \"{}\"", library.display());
    let sink = "type = \"stdout\"";
    let topic = names.topic("in");
    let (report, log) = run(&names, &names.job, &config(&names, sink, &source_kafka), &topic).await;
    let failed = failure(report, &log);
    assert!(failed.message.contains("source.kafka.\"plugin.library.paths\""), "{}", failed.message);
    assert!(failed.message.contains("--allow-kafka-code"), "{}", failed.message);
    assert_eq!(failed.kind(), pb::FailureKind::Config);
}

#[tokio::test]
async fn a_welcome_for_another_job_gets_no_work_done() {
    let names = TestNames::new("untrusted-job");
    let topic = names.topic("in");
    let text = config(&names, "type = \"stdout\"", "");
    let (report, log) = run(&names, "someone-elses-job", &text, &topic).await;
    assert!(report.is_none(), "the task was run: {report:?}");
    assert!(log.contains("runs job \"someone-elses-job\""), "the executor says why: {log}");
}
