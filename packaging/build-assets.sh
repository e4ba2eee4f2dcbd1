#!/bin/sh
# Generate the package assets that come from the binary itself, into
# target/assets/: man pages (gzipped) and bash/zsh/fish completions.
# Uses the release binary (built if missing). Fails if the binary lacks the
# `man` or `completions` subcommands: nothing is faked.
#   usage: packaging/build-assets.sh [BINARY]
# ONEIRIC_BIN_RUN: a command that runs the binary (qemu-aarch64-static for the aarch64 one,
# in the arm64 chroot of packaging/chroot.sh); the assets are the same on every architecture.
set -eu

cd "$(dirname "$0")/.."
BIN=${1:-${ONEIRIC_BIN:-target/release/oneiric}}
RUN=${ONEIRIC_BIN_RUN:-}
OUT=target/assets

if [ ! -x "$BIN" ]; then
	echo "build-assets: $BIN missing, building the release binary" >&2
	cargo build --release --locked
fi

help=$($RUN "$BIN" --help 2>&1) || { echo "build-assets: '$BIN --help' failed" >&2; exit 1; }
for sub in man completions; do
	if ! printf '%s\n' "$help" | grep -Eq "^[[:space:]]+$sub([[:space:]]|$)"; then
		echo "build-assets: '$BIN' has no '$sub' subcommand; cannot generate package assets" >&2
		exit 1
	fi
done

rm -rf "$OUT"
mkdir -p "$OUT/man" "$OUT/completions"

$RUN "$BIN" man --out-dir "$OUT/man"
[ -s "$OUT/man/oneiric.1" ] || { echo "build-assets: 'man --out-dir' wrote no oneiric.1" >&2; exit 1; }
# -n: no name/timestamp in the header, so the packages are reproducible.
gzip -9nf "$OUT"/man/*.1

$RUN "$BIN" completions bash > "$OUT/completions/oneiric.bash"
$RUN "$BIN" completions zsh  > "$OUT/completions/_oneiric"
$RUN "$BIN" completions fish > "$OUT/completions/oneiric.fish"
for f in "$OUT"/completions/*; do
	[ -s "$f" ] || { echo "build-assets: empty completion script $f" >&2; exit 1; }
done

echo "build-assets: wrote $(find "$OUT"/man -name '*.1.gz' | wc -l) man pages and 3 completion scripts to $OUT"
