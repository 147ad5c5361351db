#!/bin/bash
# Creates topics unless they exist, with Kafka's own TopicCommand (a one-shot container of the
# Kafka image: `kafka-create-topics`), and waits until each has a leader for every partition.
#
# Environment:
#   KAFKA_BOOTSTRAP [kafka:9092]
#   KAFKA_TOPICS    "name:partitions name:partitions ..."
#   KAFKA_TOPIC_REPLICATION_FACTOR [1]
set -euo pipefail
bootstrap="${KAFKA_BOOTSTRAP:-kafka:9092}"
rf="${KAFKA_TOPIC_REPLICATION_FACTOR:-1}"
[ -n "${KAFKA_TOPICS:-}" ] || { echo "kafka-create-topics: set KAFKA_TOPICS=\"name:partitions ...\"" >&2; exit 2; }
topics_tool() {
  java -cp '/opt/kafka/libs/*' -Xmx256m -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" "$@"
}
for spec in $KAFKA_TOPICS; do
  name="${spec%%:*}" partitions="${spec#*:}"
  topics_tool --create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor "$rf"
done
for spec in $KAFKA_TOPICS; do
  name="${spec%%:*}"
  for _ in $(seq 1 60); do
    if out="$(topics_tool --describe --topic "$name" 2>/dev/null)" \
        && grep -q 'Leader: [0-9]' <<<"$out" && ! grep -q 'Leader: none' <<<"$out"; then
      echo "topic $name ready"
      continue 2
    fi
    sleep 1
  done
  echo "kafka-create-topics: topic $name has a partition without a leader after 60 s" >&2
  exit 1
done
