#!/bin/bash
# The compose deployment's secrets, made once into the volume at $1 (default /secrets) by the
# one-shot `secrets` service, which runs this as root in the etcd image (it has openssl). A
# second run changes nothing. Each service mounts the volume read-only and reads the CA and its
# own directory; the directories belong to the user each image runs as:
#
#   ca.pem                      the deployment's CA (every client and server trusts it)
#   ca.key                      root only: it signs the certificates below
#   weir/ (uid 10001)           driver.pem/.key (server: driver-1, driver-2), executor.pem/.key
#                               (client), kafka-password (SCRAM user weir), etcd-driver-password,
#                               etcd-executor-password, http-token
#   kafka/ (uid 10002)          kafka.pem (key and certificate, Kafka's PEM keystore: kafka,
#                               kafka-1..3), kafka-password (the same SCRAM password)
#   etcd/ (user etcd)           etcd.pem/.key (server and peer: etcd, etcd-1..3)
#   root/ (root only)           etcd-root-password, for the `etcd-users` one-shot
#
# Every certificate also names localhost and 127.0.0.1, for the ports published on the host.
# The CA lives only in this volume: `docker-compose down -v` deletes it with everything else.
set -euo pipefail

dir="${1:-/secrets}"
weir_uid=10001 kafka_uid=10002
etcd_uid="$(id -u etcd)"
mkdir -p "$dir"
cd "$dir"

if [ -s ca.pem ] && [ -s root/etcd-root-password ]; then
  echo "secrets: already made in $dir"
  exit 0
fi
umask 077
rm -rf weir kafka etcd root ca.pem ca.key
mkdir -p weir kafka etcd root

# A CA for this deployment only.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -sha256 \
  -subj "/CN=Weir compose CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout ca.key -out ca.pem 2>/dev/null

issue() { # OUT_BASE CN USAGE DNS_NAMES...
  local base="$1" cn="$2" usage="$3" names="IP:127.0.0.1,DNS:localhost" n
  shift 3
  for n in "$@"; do names="$names,DNS:$n"; done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -subj "/CN=$cn" \
    -keyout "$base.key" -out "$base.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=$names" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=$usage" >"$base.ext"
  openssl x509 -req -sha256 -days 3650 -in "$base.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -extfile "$base.ext" -out "$base.pem" 2>/dev/null
  rm -f "$base.csr" "$base.ext"
}

issue weir/driver driver-1 serverAuth driver-1 driver-2
issue weir/executor weir-executor clientAuth
issue etcd/etcd etcd serverAuth,clientAuth etcd etcd-1 etcd-2 etcd-3
issue kafka/kafka kafka serverAuth,clientAuth kafka kafka-1 kafka-2 kafka-3
# Kafka's PEM keystore is one file: the private key, then the certificate.
cat kafka/kafka.key kafka/kafka.pem >kafka/keystore.pem
rm -f kafka/kafka.key kafka/kafka.pem ca.srl

secret() { openssl rand -hex 24; }
secret >weir/kafka-password
cp weir/kafka-password kafka/kafka-password
secret >weir/etcd-driver-password
secret >weir/etcd-executor-password
secret >weir/http-token
secret >root/etcd-root-password
# The etcd users one-shot needs the two Weir passwords to create the users.
cp weir/etcd-driver-password weir/etcd-executor-password root/

chmod 644 ca.pem
chmod 600 ca.key
chown -R "$weir_uid:$weir_uid" weir
chown -R "$kafka_uid:$kafka_uid" kafka
chown -R "$etcd_uid:$etcd_uid" etcd
chmod 700 weir kafka etcd root
chmod 755 .
echo "secrets: made a CA and the certificates and passwords of every service in $dir"
