//! Whether this executor is ready for work, as `/readyz` answers it: attached to a driver, or the
//! one-line reason it is not. The attach loop is the only writer (through a `watch` channel, see
//! `session.rs`); turning the state into the answer is pure.

/// Where the executor stands with its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Started; no driver session yet.
    Looking,
    /// In a session with the driver at `url`, which leads as `generation`.
    Attached { url: String, generation: u64 },
    /// The last session ended, or no driver could be found, for `reason`; looking again.
    Detached { reason: String },
    /// Stopping (SIGTERM or a drain): finishing the running tasks, taking no new ones.
    Leaving { url: String },
}

impl Readiness {
    /// Whether a driver session is open (also while leaving it).
    pub fn is_attached(&self) -> bool {
        matches!(self, Readiness::Attached { .. } | Readiness::Leaving { .. })
    }

    /// The HTTP status and the one line `/readyz` answers: 200 only when attached and taking
    /// tasks, so an orchestrator sends no traffic to, and waits with the rollout of, an executor
    /// that cannot work.
    pub fn answer(&self) -> (u16, String) {
        match self {
            Readiness::Attached { url, generation } => {
                (200, format!("attached to driver {url} (generation {generation})"))
            }
            Readiness::Looking => (503, "not attached: looking for the leader".to_owned()),
            Readiness::Detached { reason } => (503, format!("not attached: {}", one_line(reason))),
            Readiness::Leaving { url } => {
                (503, format!("stopping: finishing the running tasks of driver {url}"))
            }
        }
    }
}

/// Error texts (a gRPC status, say) may span lines; a health answer is one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn only_an_attached_executor_is_ready() {
        let attached = Readiness::Attached { url: "http://d1:7070".into(), generation: 3 };
        assert_eq!(
            attached.answer(),
            (200, "attached to driver http://d1:7070 (generation 3)".into())
        );
        assert!(attached.is_attached());

        assert_eq!(
            Readiness::Looking.answer(),
            (503, "not attached: looking for the leader".into())
        );
        assert!(!Readiness::Looking.is_attached());

        let leaving = Readiness::Leaving { url: "http://d1:7070".into() };
        let (code, text) = leaving.answer();
        assert_eq!(code, 503, "a leaving executor takes no new task");
        assert!(text.starts_with("stopping:"), "{text}");
        assert!(leaving.is_attached(), "the session stays open while its tasks finish");
    }

    #[test]
    fn a_detached_executor_gives_the_last_reason_on_one_line() {
        let reason =
            "the stream broke at http://d1:7070: status: Unavailable,\n  message: \"h2 error\"";
        let detached = Readiness::Detached { reason: reason.into() };
        let (code, text) = detached.answer();
        assert_eq!(code, 503);
        assert_eq!(
            text,
            "not attached: the stream broke at http://d1:7070: status: Unavailable, message: \"h2 error\""
        );
        assert!(!detached.is_attached());
    }
}
