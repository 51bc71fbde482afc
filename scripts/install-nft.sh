#!/usr/bin/env bash
# Installs nftables (the `nft` program) for the fault suite's network
# partitions. Idempotent, and never fails: where it cannot install, it says
# why, and the partition tests print that they were skipped.
set -uo pipefail
if command -v nft >/dev/null 2>&1; then
  echo "install-nft: $(nft --version 2>/dev/null || echo 'nft') is installed"
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install-nft: nft is missing and this is not root; partition tests will be skipped"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-nft: nft is missing and there is no apt-get; partition tests will be skipped"
  exit 0
fi
echo "install-nft: installing the Debian package nftables"
if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables) >/tmp/install-nft.log 2>&1; then
  echo "install-nft: apt-get could not install nftables (see /tmp/install-nft.log); partition tests will be skipped"
  tail -5 /tmp/install-nft.log
  exit 0
fi
echo "install-nft: $(nft --version 2>/dev/null || echo 'nft is still missing')"
exit 0
