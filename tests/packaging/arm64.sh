#!/bin/bash
# The arm64 packages (issue 21): built from the same packaging/ files as the x86_64 ones,
# the binary in the arm64 chroot of packaging/chroot.sh, then checked against the x86_64
# packages and statically:
#
#   tests/packaging/arm64.sh                        build all four packages, then check
#   tests/packaging/arm64.sh DEB RPM DEB64 RPM64    check given x86_64 and arm64 packages
#
# Checks: lintian and rpmlint as for x86_64, the same file lists (modes, owners, rpm flags)
# and the same bytes in every file but /usr/bin/oneiric, an aarch64 ELF there, the glibc
# baseline GLIBC_BASELINE_AARCH64 (packaging/build-binary.sh) in the binary and in the
# .deb's libc6 / the .rpm's libc.so.6 requirements, the .rpm's library Requires (rpm's
# find-requires), and the binary running under qemu-user in the chroot (`--version`).
# As root (chroot); installs its tools with apt-get. Prints PASS/FAIL and `N passed, N failed`.
set -u
set -o pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
ARGS=()
for a in "$@"; do ARGS+=("$(realpath "$a")"); done
set -- "${ARGS[@]}"
cd "$REPO" || exit 1
HERE=tests/packaging
WORK=$REPO/target/packaging-arm64
T_LOG_TAG=packaging-arm64
# shellcheck source=tests/lib.sh
. "$REPO/tests/lib.sh"
rm -rf "$WORK"
mkdir -p "$WORK"

# --- tools: aarch64-linux-gnu-objdump reads the arm64 binary (the host's objdump does not)
missing=()
for pair in lintian:lintian rpm:rpm rpmlint:rpmlint dpkg-deb:dpkg cpio:cpio \
	aarch64-linux-gnu-objdump:binutils-aarch64-linux-gnu /usr/lib/rpm/find-requires:rpm; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && T_APT_LOG=$WORK/apt.log t_apt_install "${missing[@]}"; then
		t_pass tools
	else
		t_fail tools "missing ${missing[*]} (apt-get install failed or not root)"
		t_finish
	fi
else
	t_pass tools
fi

# --- build ----------------------------------------------------------------------
build() { # build SCRIPT ARCH -> path of the package (relative to the repo)
	local out
	t0=$SECONDS
	if out=$(packaging/"$1" "$2" 2>"$WORK/$1-$2.log" | tail -n 1) && [ -f "$out" ]; then
		t_pass "$1 $2 ($((SECONDS - t0)) s)" >&2
		echo "$REPO/$out"
	else
		t_fail "$1 $2" "$(tail -n 1 "$WORK/$1-$2.log")" >&2
		return 1
	fi
}
if [ $# -ge 4 ]; then
	DEB=$1 RPM=$2 DEB64=$3 RPM64=$4
else
	# The build's own PASS/FAIL lines go to stderr inside build(): count them here.
	DEB64=$(build build-deb.sh arm64 2>"$WORK/b3") ; t_absorb "$WORK/b3"
	RPM64=$(build build-rpm.sh aarch64 2>"$WORK/b4") ; t_absorb "$WORK/b4"
	DEB=$(build build-deb.sh amd64 2>"$WORK/b1") ; t_absorb "$WORK/b1"
	RPM=$(build build-rpm.sh x86_64 2>"$WORK/b2") ; t_absorb "$WORK/b2"
	if [ -z "$DEB" ] || [ -z "$RPM" ] || [ -z "$DEB64" ] || [ -z "$RPM64" ]; then t_finish; fi
fi
echo "deb: $DEB64"
echo "rpm: $RPM64"

# --- lintian, rpmlint (the rules of tests/packaging/run.sh) ----------------------
lintian --no-cfg --display-level '>=warning' --show-overrides "$DEB64" >"$WORK/lintian.txt" 2>&1
if grep -Eq '^[EW]: ' "$WORK/lintian.txt"; then
	t_fail lintian-arm64 "$(grep -E '^[EW]: ' "$WORK/lintian.txt" | head -n 3 | tr '\n' ';')"
else
	t_pass lintian-arm64
fi
rpmlint -c "$HERE/rpmlint.toml" "$RPM64" >"$WORK/rpmlint.txt" 2>&1
if grep -q '0 errors, 0 warnings' "$WORK/rpmlint.txt" && ! grep -Eq ': [EW]: ' "$WORK/rpmlint.txt"; then
	t_pass rpmlint-aarch64
else
	t_fail rpmlint-aarch64 "$(grep -E ': [EW]: ' "$WORK/rpmlint.txt" | head -n 3 | tr '\n' ';')$(tail -n 1 "$WORK/rpmlint.txt")"
fi

# --- the same files as x86_64, but the binary -------------------------------------
# shellcheck disable=SC2317 # called by same_list
deb_list() { dpkg-deb -c "$1" | awk '{ o = $2; if (o == "0/0") o = "root/root"; print $1, o, $6 }' | sort; }
# shellcheck disable=SC2317 # called by same_list
rpm_list() { rpm -qp --qf '[%{FILEMODES:octal} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS} %{FILENAMES}\n]' "$1" | sort; }
# shellcheck disable=SC2317 # run through t_check
same_list() { # same_list deb|rpm A B
	local a b
	a=$("$1"_list "$2") b=$("$1"_list "$3")
	[ -n "$a" ] || { echo "empty file list"; return 1; }
	[ "$a" = "$b" ] || { diff <(echo "$a") <(echo "$b") | grep '^[<>]' | head -n 6 | tr '\n' ' '; return 1; }
}
t_check deb-files-as-amd64 same_list deb "$DEB" "$DEB64"
t_check rpm-files-as-x86_64 same_list rpm "$RPM" "$RPM64"
mkdir -p "$WORK/deb" "$WORK/deb64" "$WORK/rpm" "$WORK/rpm64"
dpkg-deb -x "$DEB" "$WORK/deb"
dpkg-deb -x "$DEB64" "$WORK/deb64"
dpkg-deb -e "$DEB64" "$WORK/deb64-control"
(cd "$WORK/rpm" && rpm2cpio "$RPM" | cpio -idm --quiet)
(cd "$WORK/rpm64" && rpm2cpio "$RPM64" | cpio -idm --quiet)
# shellcheck disable=SC2317 # run through t_check
same_bytes() { # same_bytes A B: every file but usr/bin/oneiric identical
	local d
	d=$(diff -rq "$1" "$2" | grep -v "usr/bin/oneiric differ$")
	[ -z "$d" ] || { echo "$d" | head -n 3 | tr '\n' ' '; return 1; }
	! cmp -s "$1/usr/bin/oneiric" "$2/usr/bin/oneiric" || { echo "the binaries are the same"; return 1; }
}
t_check deb-bytes-as-amd64 same_bytes "$WORK/deb" "$WORK/deb64"
t_check rpm-bytes-as-x86_64 same_bytes "$WORK/rpm" "$WORK/rpm64"
# shellcheck disable=SC2317 # run through t_check
is_aarch64() { aarch64-linux-gnu-objdump -f "$1" | grep -q 'architecture: aarch64' || { echo "$1 is not an aarch64 ELF"; return 1; }; }
t_check binary-aarch64-deb is_aarch64 "$WORK/deb64/usr/bin/oneiric"
t_check binary-aarch64-rpm is_aarch64 "$WORK/rpm64/usr/bin/oneiric"
t_check package-arch-deb test "$(dpkg-deb -f "$DEB64" Architecture)" = arm64
t_check package-arch-rpm test "$(rpm -qp --qf '%{ARCH}' "$RPM64" 2>/dev/null)" = aarch64

# --- glibc baseline -----------------------------------------------------------------
BASELINE=$(sed -n 's/^GLIBC_BASELINE_AARCH64=//p' packaging/build-binary.sh)
# shellcheck disable=SC2317 # called from checks run through t_check
ver_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -n 1)" = "$2" ]; }
# shellcheck disable=SC2317 # run through t_check
glibc_baseline() {
	local above max
	max=$(aarch64-linux-gnu-objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n 1)
	[ -n "$max" ] || { echo "no GLIBC_ symbol versions"; return 1; }
	above=$(aarch64-linux-gnu-objdump -T "$1" | sed -n 's/.*[ (]GLIBC_\([0-9][0-9.]*\))\{0,1\}[[:space:]]\{1,\}\([^ ]*\)$/\1 \2/p' |
		while read -r v sym; do ver_le "$v" "$BASELINE" || echo "$sym@GLIBC_$v"; done | sort -u | head -n 5 | tr '\n' ' ')
	[ -z "$above" ] || { echo "symbols above GLIBC_$BASELINE: $above"; return 1; }
	echo "newest: GLIBC_$max"
}
[ -n "$BASELINE" ] || t_fail glibc-baseline-arm64 "no GLIBC_BASELINE_AARCH64 in packaging/build-binary.sh"
t_check "glibc-baseline-arm64 (GLIBC_$BASELINE)" glibc_baseline "$WORK/deb64/usr/bin/oneiric"
t_log "arm64 binary needs GLIBC_$(aarch64-linux-gnu-objdump -T "$WORK/deb64/usr/bin/oneiric" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -uV | tail -n 1)"
# shellcheck disable=SC2317 # run through t_check
deb_depends() {
	local dep v
	dep=$(sed -n 's/^Depends: //p' "$WORK/deb64-control/control")
	v=$(tr ',' '\n' <<<"$dep" | sed -n 's/^ *libc6 (>= \([0-9.]*\))$/\1/p')
	[ -n "$v" ] || { echo "Depends has no 'libc6 (>= X)': '$dep'"; return 1; }
	ver_le "$v" "$BASELINE" || { echo "libc6 (>= $v) is above the baseline $BASELINE"; return 1; }
	grep -q 'libsqlite3-0' <<<"$dep" || { echo "Depends lacks libsqlite3-0: '$dep'"; return 1; }
	echo "Depends: $dep"
}
t_check deb-depends-arm64 deb_depends
# shellcheck disable=SC2317 # run through t_check
rpm_requires() { # the x86_64 package's Requires, with the library ones found in the aarch64 ELF
	local req r v
	req=$(rpm -qp --requires "$RPM64" 2>/dev/null)
	for r in systemd /usr/bin/getent /usr/sbin/groupadd /usr/sbin/useradd /bin/sh \
		'libc.so.6(GLIBC_' 'libsqlite3.so.0()(64bit)' 'libgcc_s.so.1'; do
		grep -qF "$r" <<<"$req" || { echo "Requires lacks $r"; return 1; }
	done
	v=$(sed -n 's/^libc\.so\.6(GLIBC_\([0-9.]*\))(64bit)$/\1/p' <<<"$req" | sort -V | tail -n 1)
	ver_le "$v" "$BASELINE" || { echo "requires libc.so.6(GLIBC_$v)(64bit), above the baseline"; return 1; }
	# Nothing the x86_64 package does not require, but for glibc's own pieces (the x86_64
	# binary links glibc 2.28, where libdl and libpthread were separate libraries; the
	# aarch64 one 2.34) and libgcc_s (Zig links its own compiler runtime into the x86_64
	# binary, Debian's gcc links libgcc_s): the same packages provide them on both.
	local toolchain='^(libc|libm|libdl|libpthread|librt|libgcc_s)\.so\.[0-9]+|^ld-linux|^rtld\('
	diff <(rpm -qp --requires "$RPM" 2>/dev/null | grep -Ev "$toolchain" | sort -u) \
		<(grep -Ev "$toolchain" <<<"$req" | sort -u) >"$WORK/requires.diff" ||
		{ echo "Requires differ from x86_64: $(grep '^[<>]' "$WORK/requires.diff" | tr '\n' ' ')"; return 1; }
}
t_check rpm-requires-aarch64 rpm_requires

# --- it runs (qemu-user, in the arm64 chroot that has its libraries) -----------------
# shellcheck disable=SC2317 # run through t_check
runs() {
	local out
	cp "$WORK/deb64/usr/bin/oneiric" "$REPO/target/oneiric-arm64-test"
	out=$(packaging/chroot.sh run arm64 . qemu-aarch64-static target/oneiric-arm64-test --version 2>&1) ||
		{ echo "$out" | tail -n 1; return 1; }
	rm -f "$REPO/target/oneiric-arm64-test"
	grep -q '^oneiric [0-9]' <<<"$out" || { echo "--version printed '$out'"; return 1; }
	echo "$out"
}
t_check "runs-under-qemu-user (--version)" runs
t_finish
