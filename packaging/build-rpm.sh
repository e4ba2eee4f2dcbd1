#!/bin/sh
# Build the .rpm from a clean clone, in one command:
#   packaging/build-rpm.sh
# Installs cargo-generate-rpm if missing, builds the release binary once,
# generates the man pages and completions (build-assets.sh), then packages.
set -eu

cd "$(dirname "$0")/.."
CARGO_GENERATE_RPM_VERSION=0.21.1

if ! cargo generate-rpm --version >/dev/null 2>&1; then
	cargo install --locked "cargo-generate-rpm@$CARGO_GENERATE_RPM_VERSION"
fi

cargo build --release --locked
packaging/build-assets.sh target/release/oneiric

mkdir -p target/generate-rpm
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(uname -m)
rpm="target/generate-rpm/oneiric-$version-1.$arch.rpm"
# --payload-compress: xz for the widest rpm compatibility (RHEL 9, openSUSE).
cargo generate-rpm --payload-compress xz -o "$rpm"
[ -f "$rpm" ] || { echo "build-rpm: $rpm was not written" >&2; exit 1; }
echo "$rpm"
