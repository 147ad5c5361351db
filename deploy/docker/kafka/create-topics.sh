#!/bin/bash
# Creates topics unless they exist, with Kafka's own TopicCommand (a one-shot container of the
# Kafka image: `kafka-create-topics`), and waits until each has a leader for every partition.
#
# Environment:
#   KAFKA_BOOTSTRAP [kafka:9092]
#   KAFKA_TOPICS    "name:partitions name:partitions ..."
#   KAFKA_TOPIC_REPLICATION_FACTOR [1]
#   KAFKA_SCRAM_USER, KAFKA_SCRAM_PASSWORD_FILE, KAFKA_TLS_CA   connect over SASL_SSL as that user
set -euo pipefail
bootstrap="${KAFKA_BOOTSTRAP:-kafka:9092}"
rf="${KAFKA_TOPIC_REPLICATION_FACTOR:-1}"
[ -n "${KAFKA_TOPICS:-}" ] || { echo "kafka-create-topics: set KAFKA_TOPICS=\"name:partitions ...\"" >&2; exit 2; }
client=()
if [ -n "${KAFKA_SCRAM_USER:-}" ]; then
  # SASL_SSL as that SCRAM user, trusting KAFKA_TLS_CA: a client properties file of our own.
  umask 077
  properties="$(mktemp)"
  trap 'rm -f "$properties"' EXIT
  cat >"$properties" <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_SCRAM_USER" password="$(cat "${KAFKA_SCRAM_PASSWORD_FILE:?KAFKA_SCRAM_USER needs KAFKA_SCRAM_PASSWORD_FILE}")";
ssl.truststore.type=PEM
ssl.truststore.location=${KAFKA_TLS_CA:?KAFKA_SCRAM_USER needs KAFKA_TLS_CA}
PROPERTIES
  client=(--command-config "$properties")
fi
topics_tool() {
  java -cp '/opt/kafka/libs/*' -Xmx256m -Dlog4j2.configurationFile=/opt/kafka/tools-log4j2.properties \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" "${client[@]}" "$@"
}
for spec in $KAFKA_TOPICS; do
  name="${spec%%:*}" partitions="${spec#*:}"
  topics_tool --create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor "$rf"
done
# One describe for all of them: every topic listed, no partition without a leader.
names="" pattern=""
for spec in $KAFKA_TOPICS; do
  names="$names ${spec%%:*}"
  pattern="${pattern:+$pattern|}${spec%%:*}"
done
for _ in $(seq 1 60); do
  if out="$(topics_tool --describe --topic "$pattern" 2>/dev/null)" && ! grep -q 'Leader: none' <<<"$out"; then
    ready=1
    for name in $names; do grep -q "^Topic: $name[[:space:]]" <<<"$out" || ready=0; done
    if [ "$ready" = 1 ]; then
      echo "topics ready:$names"
      exit 0
    fi
  fi
  sleep 1
done
echo "kafka-create-topics: a topic of$names still has a partition without a leader after 60 s" >&2
exit 1
