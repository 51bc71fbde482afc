#!/usr/bin/env bash
# Installs Debian's Chromium for the status page's browser test
# (dike-examples/tests/browser.rs). Idempotent, and never fails: where it
# cannot install, it says why, and the browser test says it was skipped
# (outside CI) or fails (in CI, where this script must have installed it).
set -uo pipefail
for c in chromium chromium-browser; do
  if command -v "$c" >/dev/null 2>&1; then
    echo "install-chromium: $("$c" --version 2>/dev/null || echo "$c") is installed"
    exit 0
  fi
done
if [ "$(id -u)" != "0" ]; then
  echo "install-chromium: chromium is missing and this is not root; the browser test will be skipped"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: chromium is missing and there is no apt-get; the browser test will be skipped"
  exit 0
fi
echo "install-chromium: installing the Debian package chromium"
if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core) >/tmp/install-chromium.log 2>&1; then
  echo "install-chromium: apt-get could not install chromium (see /tmp/install-chromium.log); the browser test will be skipped"
  tail -5 /tmp/install-chromium.log
  exit 0
fi
echo "install-chromium: $(chromium --version 2>/dev/null || echo 'chromium is still missing')"
exit 0
