#!/bin/sh
# Build the .rpm from a clean clone, in one command:
#   packaging/build-rpm.sh [x86_64|amd64|aarch64|arm64]     (default: the host's)
# aarch64 on an x86_64 host (as root): the binary is built in the arm64 chroot
# (build-binary.sh), which also runs it (qemu-user) for the man pages and completions;
# the library Requires come from rpm's find-requires (elfdeps reads any ELF), since
# cargo-generate-rpm's built-in auto-req runs ldd, which cannot read a foreign binary.
# Installs cargo-generate-rpm if missing, builds the release binary once for the
# glibc baseline (build-binary.sh), generates the man pages and completions
# (build-assets.sh), then packages. Reproducible: file times and the build time
# are SOURCE_DATE_EPOCH, by default the commit time.
set -eu

cd "$(dirname "$0")/.."

packaging/tools.sh cargo-generate-rpm
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) ||
		{ echo "build-rpm: not a git checkout; set SOURCE_DATE_EPOCH" >&2; exit 1; }
fi
export SOURCE_DATE_EPOCH

case "${1:-$(uname -m)}" in
amd64 | x86_64) arch=x86_64 ;;
arm64 | aarch64) arch=aarch64 ;;
*) echo "usage: $0 [x86_64|amd64|aarch64|arm64]" >&2; exit 2 ;;
esac
bin=$(packaging/build-binary.sh "$arch")
target=$(basename "$(dirname "$(dirname "$bin")")")
set --
if [ "$arch" = "$(uname -m)" ]; then
	packaging/build-assets.sh "$bin"
else
	packaging/chroot.sh run arm64 . env ONEIRIC_BIN_RUN=qemu-aarch64-static packaging/build-assets.sh "$bin"
	command -v /usr/lib/rpm/find-requires >/dev/null ||
		{ echo "build-rpm: /usr/lib/rpm/find-requires missing (apt-get install rpm)" >&2; exit 1; }
	set -- --auto-req find-requires
fi

# --source-date only clamps: a file older than SOURCE_DATE_EPOCH (an unchanged file in a
# long-lived checkout) would keep its own mtime, a fresh clone's the epoch, and the two
# packages would differ. Raise every older asset to the epoch, so both give the epoch.
sed -n '/^\[package.metadata.generate-rpm\]/,/^\[/s/.*source = "\([^"]*\)".*/\1/p' Cargo.toml |
	sed "s|^target/release/|target/$target/release/|" | while IFS= read -r pattern; do
	for f in $pattern; do
		[ -f "$f" ] || { echo "build-rpm: asset $f missing" >&2; exit 1; }
		[ "$(stat -c %Y "$f")" -ge "$SOURCE_DATE_EPOCH" ] || touch -m -d "@$SOURCE_DATE_EPOCH" "$f"
	done
done

mkdir -p target/generate-rpm
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
rpm="target/generate-rpm/oneiric-$version-1.$arch.rpm"
# --target: the assets' target/release/ paths are read from target/$target/release/.
# --payload-compress: xz for the widest rpm compatibility (RHEL 9, openSUSE).
cargo generate-rpm --target "$target" --arch "$arch" "$@" --payload-compress xz \
	--source-date "$SOURCE_DATE_EPOCH" -o "$rpm"
[ -f "$rpm" ] || { echo "build-rpm: $rpm was not written" >&2; exit 1; }
echo "$rpm"
