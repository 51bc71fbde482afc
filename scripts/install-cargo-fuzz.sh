#!/usr/bin/env bash
# Installs cargo-fuzz (the libFuzzer driver for cargo) and checks the nightly toolchain it
# needs. Idempotent: does nothing when both are present. Exits non-zero when it cannot
# install, so a caller (scripts/fuzz.sh, CI) can count fuzzing as skipped.
set -u

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "install-cargo-fuzz: the nightly toolchain is missing; installing it (rustup toolchain install nightly)"
    if ! rustup toolchain install nightly --profile minimal; then
        echo "install-cargo-fuzz: could not install the nightly toolchain; fuzzing is skipped" >&2
        exit 1
    fi
fi

if cargo fuzz --version >/dev/null 2>&1; then
    echo "install-cargo-fuzz: $(cargo fuzz --version) is installed"
    exit 0
fi

echo "install-cargo-fuzz: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --locked)"
if ! cargo install cargo-fuzz --locked; then
    echo "install-cargo-fuzz: could not install cargo-fuzz (no network to crates.io?); fuzzing is skipped" >&2
    exit 1
fi
echo "install-cargo-fuzz: installed $(cargo fuzz --version)"
