#!/bin/sh
# Build the .rpm from a clean clone, in one command:
#   packaging/build-rpm.sh
# Installs cargo-generate-rpm if missing, builds the release binary once for the
# glibc baseline (build-binary.sh), generates the man pages and completions
# (build-assets.sh), then packages. Reproducible: file times and the build time
# are SOURCE_DATE_EPOCH, by default the commit time.
set -eu

cd "$(dirname "$0")/.."
CARGO_GENERATE_RPM_VERSION=0.21.1

if ! cargo generate-rpm --version >/dev/null 2>&1; then
	cargo install --locked "cargo-generate-rpm@$CARGO_GENERATE_RPM_VERSION"
fi
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) ||
		{ echo "build-rpm: not a git checkout; set SOURCE_DATE_EPOCH" >&2; exit 1; }
fi
export SOURCE_DATE_EPOCH

bin=$(packaging/build-binary.sh)
target=$(basename "$(dirname "$(dirname "$bin")")")
packaging/build-assets.sh "$bin"

mkdir -p target/generate-rpm
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(uname -m)
rpm="target/generate-rpm/oneiric-$version-1.$arch.rpm"
# --target: the assets' target/release/ paths are read from target/$target/release/.
# --payload-compress: xz for the widest rpm compatibility (RHEL 9, openSUSE).
cargo generate-rpm --target "$target" --payload-compress xz --source-date "$SOURCE_DATE_EPOCH" -o "$rpm"
[ -f "$rpm" ] || { echo "build-rpm: $rpm was not written" >&2; exit 1; }
echo "$rpm"
