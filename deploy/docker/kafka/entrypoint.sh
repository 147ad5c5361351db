#!/bin/bash
# The Kafka image's entrypoint: writes server.properties from the environment, formats the
# storage on the first start, then runs the broker in the foreground (pid 1, so `docker stop`
# reaches it). A node is broker and controller at once (KRaft, combined mode).
#
# Environment (defaults in brackets; docs/deployment.md):
#   KAFKA_NODE_ID [1]
#   KAFKA_CONTROLLER_QUORUM_VOTERS [1@localhost:9093]   id@host:port of every controller
#   KAFKA_CLUSTER_ID [a fixed id]           the same on every node of a cluster (22 base64 chars)
#   KAFKA_LISTENERS [INTERNAL://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093]
#   KAFKA_ADVERTISED_LISTENERS [INTERNAL://$(hostname):9092]   what clients are told to dial
#   KAFKA_LISTENER_SECURITY_PROTOCOL_MAP [INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT]
#   KAFKA_REPLICATION_FACTOR [1]            internal topics and topics created without one
#   KAFKA_MIN_INSYNC_REPLICAS [1]           internal topics and the broker default
#   KAFKA_HEAP [512m]
#   KAFKA_CFG_<NAME>=value                  any other broker property: dots become underscores,
#                                           e.g. KAFKA_CFG_LOG_RETENTION_HOURS=24
# For SSL and SASL_SSL listeners (name them in KAFKA_LISTENER_SECURITY_PROTOCOL_MAP):
#   KAFKA_TLS_KEYSTORE                      the broker's private key then its certificate, PEM
#   KAFKA_TLS_CA                            the CA it trusts (PEM): for its own inter-broker
#                                           connections; clients present no certificate
#   KAFKA_SCRAM_USER, KAFKA_SCRAM_PASSWORD_FILE   a SCRAM-SHA-256/512 user, added to the cluster
#                                           metadata when the storage is formatted; brokers log
#                                           in as it when the inter-broker listener is SASL_SSL
set -euo pipefail

node_id="${KAFKA_NODE_ID:-1}"
voters="${KAFKA_CONTROLLER_QUORUM_VOTERS:-$node_id@localhost:9093}"
cluster_id="${KAFKA_CLUSTER_ID:-V2VpclN0cmVhbUNsdXN0ZQ}"
listeners="${KAFKA_LISTENERS:-INTERNAL://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093}"
advertised="${KAFKA_ADVERTISED_LISTENERS:-INTERNAL://$(hostname):9092}"
protocols="${KAFKA_LISTENER_SECURITY_PROTOCOL_MAP:-INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT}"
rf="${KAFKA_REPLICATION_FACTOR:-1}"
min_isr="${KAFKA_MIN_INSYNC_REPLICAS:-1}"
heap="${KAFKA_HEAP:-512m}"
data=/var/lib/kafka/data
config=/var/lib/kafka/server.properties
# It holds the SCRAM password when there is one: readable by the broker's user only.
umask 077

{
  echo "# Written by the image's entrypoint on every start, from the environment."
  echo "process.roles=broker,controller"
  echo "node.id=$node_id"
  echo "controller.quorum.voters=$voters"
  echo "listeners=$listeners"
  echo "advertised.listeners=$advertised"
  echo "listener.security.protocol.map=$protocols"
  echo "controller.listener.names=CONTROLLER"
  echo "inter.broker.listener.name=INTERNAL"
  echo "log.dirs=$data"
  echo "num.partitions=1"
  # Jobs create their topics explicitly; a typo must not create a topic silently.
  echo "auto.create.topics.enable=false"
  echo "default.replication.factor=$rf"
  echo "min.insync.replicas=$min_isr"
  echo "offsets.topic.replication.factor=$rf"
  echo "offsets.topic.num.partitions=8"
  echo "transaction.state.log.replication.factor=$rf"
  echo "transaction.state.log.min.isr=$min_isr"
  echo "transaction.state.log.num.partitions=8"
  echo "share.coordinator.state.topic.replication.factor=$rf"
  echo "share.coordinator.state.topic.min.isr=$min_isr"
  echo "group.initial.rebalance.delay.ms=0"
  if [ -n "${KAFKA_TLS_KEYSTORE:-}" ]; then
    echo "ssl.keystore.type=PEM"
    echo "ssl.keystore.location=$KAFKA_TLS_KEYSTORE"
    echo "ssl.truststore.type=PEM"
    echo "ssl.truststore.location=${KAFKA_TLS_CA:?KAFKA_TLS_KEYSTORE needs KAFKA_TLS_CA}"
    echo "ssl.client.auth=none"
  fi
  if [ -n "${KAFKA_SCRAM_USER:-}" ]; then
    scram_password="$(cat "${KAFKA_SCRAM_PASSWORD_FILE:?KAFKA_SCRAM_USER needs KAFKA_SCRAM_PASSWORD_FILE}")"
    echo "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512"
    echo "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512"
    # Every SASL listener: the server side, and the broker's own login on the inter-broker one.
    for listener in $(tr ',' '\n' <<<"$protocols" | sed -n 's/^\([A-Za-z0-9_]*\):SASL_[A-Z]*$/\1/p'); do
      name="$(tr 'A-Z' 'a-z' <<<"$listener")"
      for mechanism in scram-sha-256 scram-sha-512; do
        echo "listener.name.$name.$mechanism.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$KAFKA_SCRAM_USER\" password=\"$scram_password\";"
      done
    done
  fi
  # KAFKA_CFG_FOO_BAR=x -> foo.bar=x (later lines win over the ones above).
  env | sed -n 's/^KAFKA_CFG_\([A-Z0-9_]*\)=\(.*\)$/\1=\2/p' | while IFS='=' read -r name value; do
    printf '%s=%s\n' "$(tr 'A-Z_' 'a-z.' <<<"$name")" "$value"
  done
} >"$config"

java_opts=(-Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
  -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties)

if [ ! -f "$data/meta.properties" ]; then
  scram=()
  if [ -n "${KAFKA_SCRAM_USER:-}" ]; then
    scram=(--add-scram "SCRAM-SHA-256=[name=$KAFKA_SCRAM_USER,password=$scram_password]"
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,password=$scram_password]")
  fi
  # A static quorum (controller.quorum.voters): every node formats with the same cluster id.
  java -cp '/opt/kafka/libs/*' "${java_opts[@]}" kafka.tools.StorageTool format \
    -t "$cluster_id" -c "$config" --ignore-formatted "${scram[@]}"
fi

exec java -cp '/opt/kafka/libs/*' "${java_opts[@]}" kafka.Kafka "$config"
