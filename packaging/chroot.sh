#!/bin/sh
# Cached Debian build chroots with Debian's own Rust toolchains (as root).
#
#   packaging/chroot.sh path NAME             build (or reuse) chroot NAME, print its directory
#   packaging/chroot.sh run NAME SRC CMD...   run CMD in it with SRC bind-mounted at /build/oneiric
#                                             (cwd), /proc, /dev and /sys mounted, offline cargo
#                                             (ONEIRIC_CHROOT_HOSTBIN: a host dir put last on PATH)
#
# Chroots (recipes below; each is a minbase debootstrap plus apt-get install):
#   msrv    Debian 13 trixie, rustc/cargo 1.85 (Debian's `rustc`), gcc, libsqlite3-dev: the
#           toolchain that checks Cargo.toml's rust-version (tests/msrv/run.sh)
#   arm64   Debian 12 bookworm (glibc 2.36), rustc-web/cargo-web 1.96 (bookworm-security) with
#           libstd-rust-web-dev:arm64, gcc-aarch64-linux-gnu, libsqlite3-dev:arm64,
#           qemu-user-static: builds and runs the aarch64 binary (build-binary.sh)
#   pyref   Debian 13 trixie, python3 3.13 and a venv /opt/ref with the reference Python
#           implementation from PyPI (oneiric 0.17.0, which needs Python >= 3.13): the side-by-side
#           row of tests/bench/service.py. pip verifies PyPI with the host's CA bundle (copied in
#           as /etc/ssl/host-ca.crt), which is the one that works behind this host's proxy
#
# Cached as directories /var/tmp/oneiric-chroot/NAME-<sha256 of this script>/ (ONEIRIC_CHROOT_CACHE),
# like the VM images: changing this script rebuilds them, older ones are deleted.
# Mirrors: the host's apt sources (ONEIRIC_CHROOT_MIRROR, ONEIRIC_CHROOT_SECURITY_MIRROR).
# `run` is offline: cargo reads the crates vendored by `cargo vendor --locked` on the host
# (ONEIRIC_VENDOR, default SRC/target/vendor) through --config, never the network.
set -eu

SELF=$(readlink -f "$0")
CACHE_ROOT=${ONEIRIC_CHROOT_CACHE:-/var/tmp/oneiric-chroot}
KEY=$(sha256sum "$SELF" | cut -c1-16)
export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "[chroot ${NAME:-}] $*" >&2; }
die() { log "$*"; exit 1; }

# First deb URI of the host's apt sources whose suite is (not) a -security one.
host_mirror() { # $1 = main | security
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v want="$1" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && uris != "" && ((want == "security") == (suites ~ /-security/))) { split(uris, u, " "); print u[1]; found = 1; exit }
				types = ""; uris = ""; suites = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
			/^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
			/^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
			END { if (!found) flush() }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk -v want="$1" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ((want == "security") == ($(i + 1) ~ /-security$/)) { print $i; exit } }' "$f"
	done
}

# recipe NAME: sets DIST, FOREIGN (dpkg architecture to add, or empty), PKGS, CHECK.
recipe() {
	case "$1" in
	msrv)
		DIST=trixie FOREIGN=
		PKGS="rustc cargo gcc libc6-dev pkg-config libsqlite3-dev ca-certificates"
		CHECK="rustc --version && cargo --version"
		;;
	arm64)
		DIST=bookworm FOREIGN=arm64
		PKGS="rustc-web cargo-web libstd-rust-web-dev:arm64 gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross libc6-dev pkg-config libsqlite3-dev:arm64 dpkg-dev qemu-user-static ca-certificates"
		CHECK="rustc --version && cargo --version && test -d /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib"
		;;
	pyref)
		DIST=trixie FOREIGN=
		PKGS="python3 python3-venv ca-certificates"
		CHECK="python3 -m venv /opt/ref
		if [ -s /etc/ssl/host-ca.crt ]; then export PIP_CERT=/etc/ssl/host-ca.crt; fi
		/opt/ref/bin/pip install -q --disable-pip-version-check oneiric==0.17.0
		/opt/ref/bin/python -c 'import oneiric.remote.loader'"
		;;
	*) echo "usage: $0 path|run msrv|arm64|pyref ..." >&2; exit 2 ;;
	esac
}

ensure_debootstrap() {
	command -v debootstrap >/dev/null && return 0
	[ "$(id -u)" = 0 ] || die "debootstrap missing and not root"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2 ||
		{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2; }
}

# Mounts left under a tree by a chroot.sh older than the private namespaces below.
unmount_under() {
	awk -v r="$1" 'index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r | while IFS= read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}
# Never descends into a mount: a leftover bind of /dev must not cost the host its devices.
remove_tree() {
	[ -e "$1" ] || return 0
	unmount_under "$1"
	rm -rf --one-file-system "$1"
}

chroot_path() {
	NAME=$1
	recipe "$NAME"
	OUT=$CACHE_ROOT/$NAME-$KEY
	if [ -e "$OUT/.complete" ]; then echo "$OUT"; return 0; fi
	[ "$(id -u)" = 0 ] || die "building a chroot needs root"
	mkdir -p "$CACHE_ROOT"
	exec 8>"$CACHE_ROOT/$NAME.lock"
	flock 8
	if [ -e "$OUT/.complete" ]; then echo "$OUT"; return 0; fi
	ensure_debootstrap
	MIRROR=${ONEIRIC_CHROOT_MIRROR:-$(host_mirror main | grep -m1 . || true)}
	SECURITY=${ONEIRIC_CHROOT_SECURITY_MIRROR:-$(host_mirror security | grep -m1 . || true)}
	[ -n "$MIRROR" ] || die "no Debian mirror in the host's apt sources (set ONEIRIC_CHROOT_MIRROR)"
	t0=$(date +%s)
	remove_tree "$OUT.tmp"
	log "debootstrap --variant=minbase $DIST from $MIRROR"
	# debootstrap mounts /proc and /sys in the target itself: in a namespace of its own too.
	unshare --mount --propagation private \
		debootstrap --variant=minbase "$DIST" "$OUT.tmp" "$MIRROR" >"$CACHE_ROOT/$NAME.log" 2>&1 ||
		{ tail -n 30 "$CACHE_ROOT/$NAME.log" >&2; die "debootstrap failed"; }
	{
		echo "deb $MIRROR $DIST main"
		echo "deb $MIRROR $DIST-updates main"
		[ -z "$SECURITY" ] || echo "deb $SECURITY $DIST-security main"
	} >"$OUT.tmp/etc/apt/sources.list"
	cp /etc/resolv.conf "$OUT.tmp/etc/resolv.conf" 2>/dev/null || true
	mkdir -p "$OUT.tmp/etc/ssl"
	cp /etc/ssl/certs/ca-certificates.crt "$OUT.tmp/etc/ssl/host-ca.crt" 2>/dev/null || true
	# /proc in a private mount namespace (see chroot_run): gone with the last process.
	# shellcheck disable=SC2086 # PKGS is one word per package
	unshare --mount --propagation private --mount-proc="$OUT.tmp/proc" \
		chroot "$OUT.tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -ec "
		${FOREIGN:+dpkg --add-architecture $FOREIGN}
		apt-get update -q
		apt-get install -y -q --no-install-recommends $PKGS
		apt-get clean
		$CHECK" >>"$CACHE_ROOT/$NAME.log" 2>&1 ||
		{ tail -n 30 "$CACHE_ROOT/$NAME.log" >&2; die "apt-get install in the chroot failed"; }
	touch "$OUT.tmp/.complete"
	remove_tree "$OUT"
	mv "$OUT.tmp" "$OUT"
	for old in "$CACHE_ROOT/$NAME"-*; do
		case "$old" in "$OUT" | *.lock | *.log) ;; *) [ -d "$old" ] && remove_tree "$old" ;; esac
	done
	log "built in $(($(date +%s) - t0)) s: $OUT"
	echo "$OUT"
}

# vendor SRC: crates of SRC/Cargo.lock in $ONEIRIC_VENDOR (default SRC/target/vendor), once
# per Cargo.lock (the host's cargo downloads them; the chroot never does).
vendor() {
	V=${ONEIRIC_VENDOR:-$1/target/vendor}
	lock=$(sha256sum "$1/Cargo.lock" | cut -c1-16)
	if [ "$(cat "$V/.lock-sha" 2>/dev/null)" != "$lock" ]; then
		log "cargo vendor --locked into $V"
		rm -rf "$V"
		mkdir -p "$(dirname "$V")"
		(cd "$1" && cargo vendor --locked --versioned-dirs "$V" >/dev/null) || die "cargo vendor failed"
		echo "$lock" >"$V/.lock-sha"
	fi
}

chroot_run() {
	NAME=$1 SRC=$(readlink -f "$2")
	shift 2
	root=$(chroot_path "$NAME")
	vendor "$SRC"
	mkdir -p "$root/build/oneiric" "$root/vendor" "$root/cargo"
	printf '%s\n' '[source.crates-io]' 'replace-with = "vendored"' '[source.vendored]' \
		'directory = "/vendor"' '[net]' 'offline = true' >"$root/cargo/config.toml"
	# ONEIRIC_CHROOT_HOSTBIN: a host directory of tools (cargo-deb) put last on the PATH.
	hostbin=${ONEIRIC_CHROOT_HOSTBIN:-}
	[ -z "$hostbin" ] || mkdir -p "$root/hostbin"
	# The mounts live in a private mount namespace: they end with its last process however
	# it ends (a killed run once left /proc mounted in a half-built chroot, which the next
	# run could not delete), two runs in one chroot cannot unmount each other's, and
	# private propagation keeps unmounts under the rbind of /dev from reaching the host's.
	# shellcheck disable=SC2016 # expanded by the inner shell
	unshare --mount --propagation private sh -ec '
		root=$1 src=$2 vendor=$3 hostbin=$4
		shift 4
		mount -t proc proc "$root/proc"
		mount --rbind /dev "$root/dev"
		mount -t sysfs sysfs "$root/sys"
		mount --bind "$src" "$root/build/oneiric"
		mount --bind "$vendor" "$root/vendor"
		path=/usr/sbin:/usr/bin:/sbin:/bin
		if [ -n "$hostbin" ]; then
			mount --bind -o ro "$hostbin" "$root/hostbin"
			path=$path:/hostbin
		fi
		exec chroot "$root" /usr/bin/env -i PATH="$path" HOME=/root CARGO_HOME=/cargo \
			${SOURCE_DATE_EPOCH:+SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH} \
			sh -ec "cd /build/oneiric && exec \"\$@\"" sh "$@"' \
		sh "$root" "$SRC" "$V" "$hostbin" "$@"
}

[ $# -ge 2 ] || { echo "usage: $0 path NAME | run NAME SRC CMD..." >&2; exit 2; }
case "$1" in
path) chroot_path "$2" ;;
run)
	[ $# -ge 4 ] || { echo "usage: $0 run NAME SRC CMD..." >&2; exit 2; }
	shift
	chroot_run "$@"
	;;
*) echo "usage: $0 path NAME | run NAME SRC CMD..." >&2; exit 2 ;;
esac
