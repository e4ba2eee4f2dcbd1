#!/bin/sh
# Build the .deb from a clean clone, in one command:
#   packaging/build-deb.sh [amd64|x86_64|arm64|aarch64]     (default: the host's)
# arm64 on an x86_64 host (as root): the binary is built in the arm64 chroot
# (build-binary.sh), and this script runs again inside that chroot to package it,
# where dpkg-shlibdeps finds the arm64 libc6 and libsqlite3-0 it depends on.
# Installs cargo-deb if missing (packaging/tools.sh), builds the release binary once for the glibc
# baseline (build-binary.sh), generates the man pages and completions
# (build-assets.sh), then packages without rebuilding. Reproducible: file times
# and the package's build time are SOURCE_DATE_EPOCH, by default the commit time.
set -eu

cd "$(dirname "$0")/.."

packaging/tools.sh cargo-deb
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) ||
		{ echo "build-deb: not a git checkout; set SOURCE_DATE_EPOCH" >&2; exit 1; }
fi
export SOURCE_DATE_EPOCH

case "${1:-$(dpkg --print-architecture)}" in
amd64 | x86_64) arch=amd64 ;;
arm64 | aarch64) arch=arm64 ;;
*) echo "usage: $0 [amd64|x86_64|arm64|aarch64]" >&2; exit 2 ;;
esac
if [ -n "${ONEIRIC_IN_CHROOT:-}" ]; then
	bin=target/aarch64-unknown-linux-gnu/release/oneiric
elif [ "$arch" != "$(dpkg --print-architecture)" ]; then
	packaging/build-binary.sh "$arch" >/dev/null
	ONEIRIC_CHROOT_HOSTBIN=$(dirname "$(command -v cargo-deb)")
	export ONEIRIC_CHROOT_HOSTBIN
	exec packaging/chroot.sh run "$arch" . env ONEIRIC_IN_CHROOT=1 ONEIRIC_BIN_RUN=qemu-aarch64-static \
		packaging/build-deb.sh "$arch"
else
	bin=$(packaging/build-binary.sh "$arch")
fi
target=$(basename "$(dirname "$(dirname "$bin")")")
packaging/build-assets.sh "$bin"

mkdir -p target/debian
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
deb="target/debian/oneiric_${version}-1_${arch}.deb"
# $auto (dpkg-shlibdeps) against the glibc baseline: Debian's libc6 symbols file
# raised the minimum of sysconf@GLIBC_2.2.5 to 2.34, because a binary compiled with
# glibc 2.34's headers may pass it _SC_ names older glibc rejects. Ours is compiled
# with Zig's glibc 2.28 headers (build-binary.sh), so for every symbol whose version
# is at most the baseline the minimum is clamped to the baseline; dpkg-shlibdeps then
# computes libc6 (>= X) from the binary's symbols as always. It reads that one file
# from a copy of the dpkg database (DPKG_ADMINDIR: symlinks but for that file).
# The same clamp for aarch64, to GLIBC_BASELINE_AARCH64 (applied in the arm64 chroot, whose
# dpkg database has the arm64 libc6).
case "$target" in
x86_64-unknown-linux-gnu) baseline=$(sed -n 's/^GLIBC_BASELINE=//p' packaging/build-binary.sh) ;;
aarch64-unknown-linux-gnu) baseline=$(sed -n 's/^GLIBC_BASELINE_AARCH64=//p' packaging/build-binary.sh) ;;
*) baseline= ;;
esac
if [ -n "$baseline" ]; then
	admin=$(pwd)/target/dpkg-admin-glibc-$baseline
	rm -rf "$admin"
	mkdir -p "$admin"
	cp -as /var/lib/dpkg/. "$admin/"
	for sym in /var/lib/dpkg/info/libc6:*.symbols /var/lib/dpkg/info/libc6.symbols; do
		[ -f "$sym" ] || continue
		rm -f "$admin/info/${sym##*/}"
		awk -v base="$baseline" '
			function le(a, b,  x, y, i, n) {
				n = split(a, x, "."); split(b, y, ".")
				for (i = 1; i <= (n > 3 ? n : 3); i++) { if ((x[i] + 0) != (y[i] + 0)) return (x[i] + 0) < (y[i] + 0) }
				return 1
			}
			/^ [^ ]+@GLIBC_[0-9.]+ [0-9.]+$/ {
				v = $1; sub(/.*@GLIBC_/, "", v)
				if (le(v, base) && !le($2, base)) { print " " $1 " " base; next }
			}
			{ print }' "$sym" >"$admin/info/${sym##*/}"
	done
	DPKG_ADMINDIR=$admin
	export DPKG_ADMINDIR
fi
# --target: the assets' target/release/ paths are read from target/$target/release/.
cargo deb --no-build --locked --target "$target" -o "$deb"
[ -f "$deb" ] || { echo "build-deb: $deb was not written" >&2; exit 1; }
echo "$deb"
