#!/usr/bin/env bash
# Installs what the side-by-side benchmark against etcd needs
# (cargo run --release -p integration --bin vs-etcd --features etcd-grpc):
# etcd 3.4 (Debian's etcd-server) and protoc (Debian's protobuf-compiler),
# which the etcd-client crate behind the `etcd-grpc` feature needs to compile
# etcd's .proto files. Idempotent: installs only what is missing. Only the
# benchmark needs these, so the test suite does not call this.
set -euo pipefail
missing=()
if command -v etcd >/dev/null 2>&1; then
  echo "install-etcd: $(etcd --version | head -1) already installed"
else
  missing+=(etcd-server etcd-client)
fi
if command -v protoc >/dev/null 2>&1; then
  echo "install-etcd: $(protoc --version) already installed"
else
  missing+=(protobuf-compiler)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-etcd: missing ${missing[*]} and this is not root; install these Debian packages" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
echo "install-etcd: $(etcd --version | head -1), $(protoc --version)"
