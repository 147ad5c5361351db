#!/bin/bash
# The Kafka image's health check without curl or a JVM: the broker's client listener accepts a
# connection (bash's /dev/tcp). KAFKA_HEALTH_PORT [9092].
exec 3<>"/dev/tcp/127.0.0.1/${KAFKA_HEALTH_PORT:-9092}"
