#!/usr/bin/env bash
# Builds target/debian/hapwatch_<version>_<arch>.deb: the binary, its man page and shell
# completions (generated from the clap definition), the default config and rules in
# /etc/hapwatch, and the systemd units. Needs cargo-deb (`cargo install cargo-deb`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
mkdir -p target/assets
bin=target/release/hapwatch
"$bin" man > target/assets/hapwatch.1
"$bin" completions bash > target/assets/hapwatch.bash
"$bin" completions zsh > target/assets/_hapwatch
"$bin" completions fish > target/assets/hapwatch.fish
cargo deb --no-build "$@"
