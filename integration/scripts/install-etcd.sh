#!/usr/bin/env bash
# Installs etcd 3.4 (Debian's etcd-server) for the side-by-side benchmark
# (cargo run --release -p integration --bin vs-etcd). Idempotent; only the
# benchmark needs it, so the test suite does not call this.
set -euo pipefail
if command -v etcd >/dev/null 2>&1; then
  echo "install-etcd: $(etcd --version | head -1) already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-etcd: etcd is missing and this is not root; install Debian's etcd-server" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client
echo "install-etcd: $(etcd --version | head -1)"
