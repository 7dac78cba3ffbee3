#!/usr/bin/env bash
# Runs the loan service: API, worker and bureau simulator in one process.
# With no etcd or RabbitMQ configured (the default settings.ini) it uses an
# embedded store in ./data and an in-process queue. Arguments are passed to
# `loan serve` (see `loan serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_protoc
ensure_wasm_target
build_policy
echo "==> building and starting loan"
cargo build --release --bin loan
exec target/release/loan serve "$@"
