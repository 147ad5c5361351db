//! What an operator asked of a job, as stored in etcd: the job's state
//! (`{prefix}/jobs/{job}/control/state`: running, stop requested, stopped) and requests to drain
//! one executor (`{prefix}/jobs/{job}/control/drain/{executor}`). `weirctl` writes them; the
//! leading driver reads them, acts, and confirms a stop by writing `Stopped`.
//!
//! Invariant kept here: an absent state key means running, so a job created before this existed
//! (or after `weirctl job resume`) runs.

use std::fmt;

use prost::Message;
use weir_proto::v1 as pb;

use crate::error::{ProtoError, check_format_version, decode};

pub const CONTROL_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    #[default]
    Running,
    /// Plan nothing new; let in-flight batches commit.
    StopRequested,
    /// Confirmed by the leading driver: nothing in flight, nothing planned until a resume.
    Stopped,
}

impl JobState {
    /// Stop requested or stopped: no new batch is planned.
    pub fn holds_planning(self) -> bool {
        self != JobState::Running
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobState::Running => "running",
            JobState::StopRequested => "stop requested (draining)",
            JobState::Stopped => "stopped",
        })
    }
}

/// The value of `control/state`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobControl {
    pub state: JobState,
    pub changed_at_ms: i64,
    pub changed_by: String,
}

impl JobControl {
    pub fn encode(&self) -> Vec<u8> {
        let state = match self.state {
            JobState::Running => pb::JobState::Running,
            JobState::StopRequested => pb::JobState::StopRequested,
            JobState::Stopped => pb::JobState::Stopped,
        };
        pb::JobControl {
            format_version: CONTROL_FORMAT_VERSION,
            state: state.into(),
            changed_at_ms: self.changed_at_ms,
            changed_by: self.changed_by.clone(),
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let value = decode::<pb::JobControl>("JobControl", bytes)?;
        check_format_version("JobControl", value.format_version, CONTROL_FORMAT_VERSION)?;
        let state = match pb::JobState::try_from(value.state) {
            Ok(pb::JobState::Running) => JobState::Running,
            Ok(pb::JobState::StopRequested) => JobState::StopRequested,
            Ok(pb::JobState::Stopped) => JobState::Stopped,
            // Unknown or unspecified: hold the job rather than run one an operator may have
            // meant to stop.
            Ok(pb::JobState::Unspecified) | Err(_) => {
                return Err(ProtoError::InvalidField {
                    message: "JobControl",
                    field: "state",
                    reason: format!("unknown state {}", value.state),
                });
            }
        };
        Ok(JobControl { state, changed_at_ms: value.changed_at_ms, changed_by: value.changed_by })
    }
}

/// The value of `control/drain/{executor}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainRequest {
    pub requested_at_ms: i64,
}

impl DrainRequest {
    pub fn encode(&self) -> Vec<u8> {
        pb::DrainRequest {
            format_version: CONTROL_FORMAT_VERSION,
            requested_at_ms: self.requested_at_ms,
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        let value = decode::<pb::DrainRequest>("DrainRequest", bytes)?;
        check_format_version("DrainRequest", value.format_version, CONTROL_FORMAT_VERSION)?;
        Ok(DrainRequest { requested_at_ms: value.requested_at_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips() {
        for state in [JobState::Running, JobState::StopRequested, JobState::Stopped] {
            let c = JobControl { state, changed_at_ms: 17, changed_by: "weirctl on h".into() };
            assert_eq!(JobControl::decode(&c.encode()).unwrap(), c);
        }
        let d = DrainRequest { requested_at_ms: 5 };
        assert_eq!(DrainRequest::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn an_unknown_state_is_refused_not_read_as_running() {
        let value = pb::JobControl {
            format_version: 1,
            state: 42,
            changed_at_ms: 0,
            changed_by: String::new(),
        };
        let err = JobControl::decode(&value.encode_to_vec()).unwrap_err();
        assert_eq!(err.to_string(), "JobControl.state: unknown state 42");
    }
}
