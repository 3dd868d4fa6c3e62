#!/usr/bin/env bash
# Starts the safety-service on loopback, asks it about every node of examples/cluster.json, and
# stops it again. Needs only cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p safety-service --bins
# The service's own log (one line per call) goes to target/demo-safety-service.log.
target/debug/safety-service --listen 127.0.0.1:50051 --metrics-listen 127.0.0.1:9101 \
  2>target/demo-safety-service.log &
service=$!
trap 'kill "$service" 2>/dev/null; wait "$service" 2>/dev/null || true' EXIT

target/debug/safety-ask --endpoint http://127.0.0.1:50051 --cluster-file examples/cluster.json --wait-seconds 30 "$@"
