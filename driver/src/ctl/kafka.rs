//! `weirctl`'s Kafka side: each partition's log bounds, offsets by record time, and the group
//! `weir.{job}`, through the driver's own clients (`source.rs`, `group.rs`).

use std::collections::BTreeMap;

use weir_common::TopicPartition;
use weir_common::config::{SourceConfig, StartingOffsets};

use super::CtlError;
use super::reset::{Bounds, Offsets};
use crate::group::KafkaGroup;
use crate::io::{JobGroup, SourceMetadata};
use crate::source::KafkaSource;

pub struct KafkaView {
    source: KafkaSource,
    group: KafkaGroup,
    config: SourceConfig,
}

fn failed(e: crate::DriverError) -> CtlError {
    CtlError::Failed(e.to_string())
}

impl KafkaView {
    pub fn new(job: &str, config: &SourceConfig) -> Result<Self, CtlError> {
        Ok(KafkaView {
            source: KafkaSource::new(config).map_err(failed)?,
            group: KafkaGroup::for_job(job, config).map_err(failed)?,
            config: config.clone(),
        })
    }

    pub fn group(&self) -> String {
        self.group.name().to_owned()
    }

    pub async fn bounds(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Bounds>, CtlError> {
        let start = self.source.earliest(partitions.to_vec()).await.map_err(failed)?;
        let end = self.source.latest(partitions.to_vec()).await.map_err(failed)?;
        Ok(start
            .into_iter()
            .filter_map(|(tp, start)| end.get(&tp).map(|&end| (tp, Bounds { start, end })))
            .collect())
    }

    /// The first offset at or after `timestamp_ms` in each partition (its end when none).
    pub async fn at_time(
        &self,
        partitions: &[TopicPartition],
        timestamp_ms: i64,
    ) -> Result<Offsets, CtlError> {
        let by_time = StartingOffsets::Timestamp { timestamp_ms };
        self.source.starting_offsets(partitions.to_vec(), by_time).await.map_err(failed)
    }

    pub async fn group_offsets(&self, partitions: &[TopicPartition]) -> Result<Offsets, CtlError> {
        self.group.committed(partitions.to_vec()).await.map_err(failed)
    }

    /// Moves the group to `offsets`, then reads it back and names any partition that differs.
    pub async fn move_group(&self, offsets: &Offsets) -> Result<(), CtlError> {
        self.group.move_to(offsets.clone()).await.map_err(failed)?;
        let partitions: Vec<TopicPartition> = offsets.keys().cloned().collect();
        let now = self.group_offsets(&partitions).await?;
        let wrong: Vec<String> = offsets
            .iter()
            .filter(|(tp, at)| now.get(*tp) != Some(*at))
            .map(|(tp, at)| format!("{tp} is at {:?}, not {at}", now.get(tp)))
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(CtlError::Failed(format!(
                "group {} did not take the new offsets: {}",
                self.group.name(),
                wrong.join("; ")
            )))
        }
    }

    pub async fn delete_group(&self) -> Result<(), CtlError> {
        self.group.delete(&self.config).await.map_err(failed)
    }
}
