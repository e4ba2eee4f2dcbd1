#!/bin/sh
# Build the .deb from a clean clone, in one command:
#   packaging/build-deb.sh
# Installs cargo-deb if missing, builds the release binary once, generates the
# man pages and completions (build-assets.sh), then packages without rebuilding.
set -eu

cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0

if ! cargo deb --version >/dev/null 2>&1; then
	cargo install --locked "cargo-deb@$CARGO_DEB_VERSION"
fi

cargo build --release --locked
packaging/build-assets.sh target/release/oneiric

mkdir -p target/debian
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
deb="target/debian/oneiric_${version}-1_${arch}.deb"
cargo deb --no-build --locked -o "$deb"
[ -f "$deb" ] || { echo "build-deb: $deb was not written" >&2; exit 1; }
echo "$deb"
