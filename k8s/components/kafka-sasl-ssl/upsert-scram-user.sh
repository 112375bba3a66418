#!/usr/bin/env bash
# Creates or updates the SCRAM-SHA-512 credential of the Kafka client user from the password
# in the mounted Secret kafka-client, so the Secret stays the one place the password lives.
#
# Run by the kafka container's postStart hook at every start (k8s/components/kafka-sasl-ssl,
# broker.yaml), and by hand after a rotation (k8s/README.md, "Rotating the Kafka password"):
#   kubectl -n tweetoscope exec kafka-0 -c kafka -- bash /etc/kafka/sasl/upsert-scram-user.sh
#
# It talks to the broker's PLAINTEXT listener, which the secured variant binds to the pod's
# loopback only (127.0.0.1:9092): only processes in the kafka pod reach it. The password goes to
# kafka-configs in a file readable by this user alone (deleted on exit), never on a command line.
# The postStart hook has no timeout of its own: this script gives up after SCRAM_UPSERT_TIMEOUT
# seconds (a failed hook restarts the container, and the event FailedPostStartHook says why).
#
# Environment (the defaults are the pod's; tests set others):
#   SCRAM_USER             the client user (the dataflow's sasl_username)           tweetoscope
#   SCRAM_PASSWORD_FILE    the mounted password (Secret kafka-client, key sasl-password)
#                                                                /etc/kafka/client/sasl-password
#   SCRAM_BOOTSTRAP        the broker's in-pod listener                             127.0.0.1:9092
#   SCRAM_UPSERT_TIMEOUT   seconds to wait for the broker                           300
#   KAFKA_CONFIGS          the kafka-configs tool               /opt/kafka/bin/kafka-configs.sh
set -euo pipefail
export LC_ALL=C # byte-wise character classes below

user="${SCRAM_USER:-tweetoscope}"
password_file="${SCRAM_PASSWORD_FILE:-/etc/kafka/client/sasl-password}"
bootstrap="${SCRAM_BOOTSTRAP:-127.0.0.1:9092}"
timeout="${SCRAM_UPSERT_TIMEOUT:-300}"
kafka_configs="${KAFKA_CONFIGS:-/opt/kafka/bin/kafka-configs.sh}"

say() { echo "upsert-scram-user: $*" >&2; }

[[ -r "$password_file" ]] || { say "error: cannot read $password_file (is the Secret kafka-client mounted?)"; exit 1; }
password="$(cat "$password_file")"
# The clients trim the file the same way (src/io/kafka.rs): surrounding whitespace and newlines.
password="${password#"${password%%[![:space:]]*}"}"
password="${password%"${password##*[![:space:]]}"}"
[[ -n "$password" ]] || { say "error: $password_file is empty"; exit 1; }
# kafka-configs reads a line `SCRAM-SHA-512=password=$password` from a Java properties file
# (ISO-8859-1, where a backslash escapes): printable ASCII only, backslashes doubled.
if [[ "$password" =~ [^[:print:]] ]]; then
  say "error: the password in $password_file has characters other than printable ASCII: use e.g. \`openssl rand -hex 32\`"
  exit 1
fi

umask 077
config="$(mktemp "${TMPDIR:-/tmp}/scram.XXXXXX")"
trap 'rm -f "$config"' EXIT
printf 'SCRAM-SHA-512=password=%s\n' "${password//\\/\\\\}" >"$config"

# A small JVM beside the broker's (the container's memory limit counts both), without the
# broker's heap settings and JAAS file.
export KAFKA_HEAP_OPTS="-Xmx64m" KAFKA_JVM_PERFORMANCE_OPTS="-XX:+UseSerialGC -XX:TieredStopAtLevel=1" KAFKA_OPTS=""

# The broker's listener first (bash's /dev/tcp: no JVM per attempt), then the alteration,
# retried while the broker is still starting (it accepts connections before it serves).
host="${bootstrap%:*}" port="${bootstrap##*:}"
deadline=$((SECONDS + timeout))
until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
  if ((SECONDS >= deadline)); then
    say "error: nothing listens on $bootstrap after ${timeout}s"
    exit 1
  fi
  sleep 2
done
attempt=0
until out="$("$kafka_configs" --bootstrap-server "$bootstrap" --alter --entity-type users --entity-name "$user" \
  --add-config-file "$config" 2>&1)"; do
  attempt=$((attempt + 1))
  # A refused alteration (a malformed value, an unknown mechanism) will not get better.
  if ((SECONDS >= deadline)) || grep -qE 'IllegalArgumentException|Invalid credential' <<<"$out"; then
    say "error: no SCRAM credential for user $user after $attempt attempts; kafka-configs said (password hidden):"
    grep -Ev '^[[:space:]]|INFO' <<<"${out//"$password"/<hidden>}" | tail -n 5 >&2
    exit 1
  fi
  sleep 5
done
unset password
say "SCRAM-SHA-512 credential of user $user set from $password_file"
