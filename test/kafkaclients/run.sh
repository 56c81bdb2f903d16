#!/usr/bin/env bash
# Runs Kafka clients that are not Go against `sluice serve --kafka-listen`:
# kcat (librdkafka) lists metadata, produces, consumes and joins a group;
# kafkajs produces (idempotent) and consumes in a group. It installs Debian's
# kcat and kafkajs from npm when missing (kafkajs into a temporary directory),
# and skips, saying so, what it cannot install. Exit status 0 when every
# check that ran passed.
#
#   test/kafkaclients/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; echo "--- server log"; tail -30 "$work/serve.log" || true; exit 1; }

if ! command -v kcat >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing kcat"
  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null || true
fi

echo "== building sluice"
go build -o "$work/sluice" ./cmd/sluice
"$work/sluice" serve --data "$work/data" --listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q 'msg="kafka listening"' "$work/serve.log" 2>/dev/null && break
  sleep 0.1
done
kafka=$(sed -n 's/.*msg="kafka listening" addr=\([^ ]*\).*/\1/p' "$work/serve.log" | head -1)
api=$(sed -n 's/.*msg=listening addr=\([^ ]*\).*/\1/p' "$work/serve.log" | head -1)
[ -n "$kafka" ] && [ -n "$api" ] || fail "the server did not start"
echo "sluice: API $api, Kafka $kafka"
cli() { "$work/sluice" --server "$api" "$@"; }
# backlog STREAM SUB: the backlog of the sluice subscription a Kafka group
# commits to, once its commits are in (a client commits on close).
backlog() {
  local b=
  for _ in $(seq 50); do
    b=$(cli subscription info "$1" "$2" --json 2>/dev/null | sed -n 's/.*"backlog": *"\{0,1\}\([0-9]*\).*/\1/p' | head -1)
    [ "$b" = 0 ] && break
    sleep 0.1
  done
  echo "$b"
}

ran=0
if command -v kcat >/dev/null 2>&1; then
  echo "== kcat ($(kcat -V 2>&1 | head -1))"
  cli stream create kcat-orders --partitions 3 >/dev/null
  kcat -L -b "$kafka" -t kcat-orders >"$work/meta.txt" || fail "kcat -L"
  grep -q 'broker 0 at' "$work/meta.txt" && grep -q '3 partitions' "$work/meta.txt" || fail "kcat -L: $(cat "$work/meta.txt")"
  echo "metadata: $(grep -c 'partition ' "$work/meta.txt") partitions listed"
  for i in $(seq 0 29); do echo "user-$((i % 5)):order $i"; done | kcat -P -b "$kafka" -t kcat-orders -K: -X enable.idempotence=true || fail "kcat -P"
  n=$(kcat -C -b "$kafka" -t kcat-orders -o beginning -e -q -f '%k:%s\n' | grep -c '^user-[0-4]:order ')
  [ "$n" = 30 ] || fail "kcat -C read $n of 30 messages"
  echo "produced 30, consumed $n"
  n=$(timeout 60 kcat -G kcat-group -b "$kafka" -o beginning -c 30 -q -f '%s\n' -X auto.offset.reset=earliest kcat-orders | grep -c '^order ')
  [ "$n" = 30 ] || fail "kcat -G read $n of 30 messages"
  backlog=$(backlog kcat-orders kcat-group)
  [ "$backlog" = 0 ] || fail "kcat-group's sluice subscription has backlog '$backlog' after consuming everything"
  echo "group kcat-group consumed $n; its sluice subscription's backlog: $backlog"
  ran=$((ran + 1))
else
  echo "SKIP kcat: not installed and not installable here (Debian: apt-get install kcat)"
fi

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  echo "== kafkajs (node $(node --version))"
  if (cd "$work" && npm install --silent --no-audit --no-fund kafkajs@2.2.4 >/dev/null 2>&1); then
    cli stream create kafkajs-events --partitions 2 >/dev/null
    cp test/kafkaclients/clients.mjs "$work/"
    (cd "$work" && KAFKAJS_NO_PARTITIONER_WARNING=1 timeout 120 node clients.mjs "$kafka" kafkajs-events kafkajs-group 20) || fail "kafkajs"
    backlog=$(backlog kafkajs-events kafkajs-group)
    [ "$backlog" = 0 ] || fail "kafkajs-group's sluice subscription has backlog '$backlog' after consuming everything"
    echo "kafkajs-group's sluice subscription's backlog: $backlog"
    ran=$((ran + 1))
  else
    echo "SKIP kafkajs: npm could not install kafkajs"
  fi
else
  echo "SKIP kafkajs: node and npm are not installed (Debian: apt-get install nodejs npm)"
fi
echo "KAFKA CLIENTS PASS ($ran of 2 clients ran)"
