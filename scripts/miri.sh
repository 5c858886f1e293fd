#!/usr/bin/env bash
# Runs the unit tests of the producer's slot pool under Miri, which checks
# its raw pointers (they cross librdkafka as delivery opaques) against Rust's
# aliasing rules. The pool is std only, so it is compiled on its own, in a
# throw-away crate, rather than with the whole library (Miri cannot run
# librdkafka's C code, and building every dependency for it takes long).
#
#   scripts/miri.sh        # needs the nightly toolchain with its miri component:
#                          # rustup component add miri rust-src --toolchain nightly
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${KAFKAESK_MIRI_DIR:-${TMPDIR:-/tmp}/kafkaesk-miri}"
mkdir -p "$work/src"
cat >"$work/Cargo.toml" <<'TOML'
[package]
name = "kafkaesk-slots-miri"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]
TOML
cat >"$work/src/lib.rs" <<RUST
#![allow(dead_code)]
#[path = "$root/kafkaesk/src/native/slots.rs"]
mod slots;
RUST
cd "$work"
exec cargo +nightly miri test "$@"
