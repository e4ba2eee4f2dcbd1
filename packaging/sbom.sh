#!/bin/sh
# The release's SBOM (CycloneDX JSON, by crates.io's cargo-cyclonedx, installed by packaging/tools.sh
# at a pinned version when missing): every crate the shipped binary is built from, for the
# target the packages are built for.
#   packaging/sbom.sh OUT-DIR     prints OUT-DIR/oneiric-<version>.cdx.json
set -eu

cd "$(dirname "$0")/.."
out=${1:?usage: packaging/sbom.sh OUT-DIR}
mkdir -p "$out"
packaging/tools.sh cargo-cyclonedx
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
# Written beside Cargo.toml under a name of our own, then moved out of the tree.
# --target: the dependencies of the x86_64 Linux build (no Windows/macOS-only crates).
cargo cyclonedx --format json --spec-version 1.5 --target x86_64-unknown-linux-gnu \
	--override-filename oneiric-sbom-tmp >&2
mv oneiric-sbom-tmp.json "$out/oneiric-$version.cdx.json"
echo "$out/oneiric-$version.cdx.json"
