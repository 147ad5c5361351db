use std::process::Command;
use std::time::Duration;

use weir_tests::binaries;
use weir_tests::supervisor::{Supervisor, process_state};

/// A real executor with no driver to find: it waits (and logs) until stopped.
fn idle_executor() -> Command {
    let mut command = Command::new(binaries::path("weir-executor"));
    let etcd = weir_tests::services::ensure().etcd_endpoints.join(",");
    command.args(["--job", &weir_tests::names::unique("smoke-idle"), "--etcd", &etcd]);
    command
}

/// The real binaries run under the supervisor: pause and resume, and a clean exit on SIGTERM.
#[tokio::test]
async fn binaries_pause_resume_and_stop_on_sigterm() {
    let mut supervisor = Supervisor::new("smoke-supervisor");
    let pid = supervisor.spawn("executor", idle_executor());
    supervisor.wait_for_log("executor", "Executor started", Duration::from_secs(10)).await;

    supervisor.pause("executor");
    assert_eq!(process_state(pid), Some('T'), "SIGSTOP leaves the process stopped");
    supervisor.resume("executor");
    assert_ne!(process_state(pid), Some('T'), "SIGCONT lets it run again");

    let status = supervisor.terminate("executor", Duration::from_secs(10)).await;
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    assert!(
        supervisor.log("executor").contains("signal=\"SIGTERM\""),
        "{}",
        supervisor.log("executor")
    );
}

/// A test that panics still leaves no child behind, paused children included.
#[tokio::test]
async fn children_die_when_a_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let mut supervisor = Supervisor::new("smoke-panic");
        let driver = supervisor.spawn("other", idle_executor());
        let executor = supervisor.spawn("executor", idle_executor());
        supervisor.pause("executor");
        tx.send([driver, executor]).unwrap();
        panic!("a failing test");
    })
    .join();
    assert!(outcome.is_err(), "the test body panicked");
    for pid in rx.recv().unwrap() {
        assert_eq!(process_state(pid), None, "child {pid} still exists after the panic");
    }
}

/// `kill -9` ends a child at once, as a crashed machine would.
#[tokio::test]
async fn kill_ends_a_child_with_sigkill() {
    use std::os::unix::process::ExitStatusExt;
    let mut supervisor = Supervisor::new("smoke-kill");
    supervisor.spawn("executor", idle_executor());
    supervisor.wait_for_log("executor", "Executor started", Duration::from_secs(10)).await;
    let status = supervisor.kill("executor");
    assert_eq!(status.signal(), Some(9));
    assert!(!supervisor.is_running("executor"));
}
