#!/bin/bash
# The signed repositories of issue 17, made with packaging/publish.sh from the packages
# under test, and checked on the host:
#
#   tests/packaging/repos.sh make  OUT DEB RPM [DEB_ARM64 RPM_ARM64]   the fixture trees (tests/vm/run.sh)
#   tests/packaging/repos.sh check OUT DEB RPM [DEB_ARM64 RPM_ARM64]   make, then check them (PASS/FAIL)
#
# With the arm64 packages, R1 carries both architectures (apt: binary-amd64 and binary-arm64
# of one suite; dnf: x86_64 and aarch64 in one repodata), as a release is published.
#
# Test keys (RSA 3072, made here, never the real key; a private GNUPGHOME in
# OUT/gnupg) A and B. Releases: R1 = the packages under test; R2 = the same packages at
# a higher version (R1's version +next1) whose packaged default /etc/oneiric/app.yml
# and tasks.yml changed; R3 (+next2) ships a default events.yml that fails
# `oneiric health --pre-start` (the failed-upgrade scenario). R2 and R3 are the R1 packages
# repacked with the new version and files (dpkg-deb; rpmbuild from the payload with
# the same scriptlets and attributes): the binary is byte-identical, which keeps the
# second release at seconds instead of a second optimised build.
#
# Trees (each a complete publish.sh output, served as file:// in the VM):
#   OUT/r1        R1 + oneiric-archive-keyring 1 (key A), signed by A
#   OUT/r2        R2 + keyring 1, signed by A
#   OUT/r3        R3 + keyring 2, signed by B (after the rotation)
#   OUT/rot1      R2 + keyring 2 (keys A and B), signed by A   (rotation, step 1)
#   OUT/rot2      the same packages, signed by B only          (rotation, step 2)
#   OUT/expired   R1, published on 2026-01-01 with Valid-Until 7 days later (libfaketime)
#   OUT/unsigned  R3's .rpm NOT signed, in metadata that is (a bad publisher's tree)
#   OUT/vmtest-system-provides.rpm  test-only: Provides: everything the .rpm requires
#                 (the Debian guest's rpm database knows no system package)
set -u
set -o pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
T_LOG_TAG=repos
# shellcheck source=tests/lib.sh
. "$REPO/tests/lib.sh"

MODE=${1:-}
OUT=${2:-}
DEB=${3:-}
RPM=${4:-}
DEB_ARM64=${5:-}
RPM_ARM64=${6:-}
USAGE="usage: $0 make|check OUT DEB RPM [DEB_ARM64 RPM_ARM64]"
case "$MODE" in make | check) ;; *) echo "$USAGE" >&2; exit 2 ;; esac
if [ -z "$OUT" ] || [ ! -f "$DEB" ] || [ ! -f "$RPM" ]; then echo "$USAGE" >&2; exit 2; fi
if [ -n "$DEB_ARM64$RPM_ARM64" ] && { [ ! -f "$DEB_ARM64" ] || [ ! -f "$RPM_ARM64" ]; }; then echo "$USAGE" >&2; exit 2; fi
DEB=$(realpath "$DEB")
RPM=$(realpath "$RPM")
ARM64=()
[ -z "$DEB_ARM64" ] || ARM64=("$(realpath "$DEB_ARM64")" "$(realpath "$RPM_ARM64")")
mkdir -p "$OUT"
OUT=$(realpath "$OUT")

need() { # need CMD PACKAGE: installs PACKAGE with apt-get when CMD is missing
	command -v "$1" >/dev/null 2>&1 && return 0
	[ "$(id -u)" = 0 ] || { echo "missing $1 (package $2) and not root" >&2; return 1; }
	T_APT_LOG=$OUT/apt.log t_apt_install "$2"
}
for tc in reprepro:reprepro createrepo_c:createrepo-c rpmbuild:rpm rpmsign:rpm gpg:gnupg gpgv:gpgv \
	faketime:faketime cpio:cpio lintian:lintian; do
	need "${tc%%:*}" "${tc#*:}" || { t_fail repo-tools "cannot install ${tc#*:}"; t_finish; }
done

# --- the releases ------------------------------------------------------------------
# repack_deb IN OUT VERSION EDIT: EDIT is a function run in the unpacked root.
repack_deb() {
	local tmp
	tmp=$(mktemp -d)
	dpkg-deb -R "$1" "$tmp/x"
	sed -i "s/^Version: .*/Version: $3/" "$tmp/x/DEBIAN/control"
	(cd "$tmp/x" && "$4") || { echo "editing $1 failed"; rm -rf "$tmp"; return 1; }
	(cd "$tmp/x" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' md5sum >DEBIAN/md5sums)
	dpkg-deb --root-owner-group -Zxz -b "$tmp/x" "$2" >/dev/null
	rm -rf "$tmp"
}
# repack_rpm IN OUT VERSION EDIT: rebuilt with rpmbuild from IN's payload, file
# attributes, config flags, scriptlets and requires (as tests/vm/run.sh's make_old_rpm).
repack_rpm() {
	local tmp in=$1 tag body
	tmp=$(mktemp -d)
	mkdir -p "$tmp/root" "$tmp/top"
	# Not a pipeline: Debian 12's rpm2cpio exits 1 on cargo-generate-rpm's packages after
	# writing the whole archive, which pipefail turned into a skipped edit. The archive
	# is checked by cpio and by the edit instead.
	rpm2cpio "$in" >"$tmp/payload.cpio" || true
	(cd "$tmp/root" && cpio -idm --quiet <"$tmp/payload.cpio" && "$4") || { echo "unpacking or editing $in failed"; rm -rf "$tmp"; return 1; }
	q() { rpm -qp --qf "$1" "$in" 2>/dev/null; }
	{
		echo "Name: $(q '%{NAME}')"
		echo "Version: $3"
		echo "Release: $(q '%{RELEASE}')"
		echo "Summary: $(q '%{SUMMARY}')"
		echo "License: $(q '%{LICENSE}')"
		echo "AutoReqProv: no"
		rpm -qp --requires "$in" 2>/dev/null | grep -v '^rpmlib(' | sed 's/^/Requires: /'
		echo "%global __os_install_post %{nil}"
		echo "%global _build_id_links none"
		echo "%description"
		q '%{DESCRIPTION}'
		echo
		for tag in PREIN:pre POSTIN:post PREUN:preun POSTUN:postun; do
			body=$(q "%{${tag%%:*}}")
			if [ -n "$body" ] && [ "$body" != "(none)" ]; then
				echo "%${tag#*:} -p /bin/sh"
				printf '%s\n' "$body"
			fi
		done
		echo "%files"
		rpm -qp --qf '[%{FILEMODES:octal} %{FILEUSERNAME} %{FILEGROUPNAME} f%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$in" 2>/dev/null |
			awk '{ m = substr($1, length($1) - 3); c = ""; if ($4 ~ /c/) c = ($4 ~ /n/) ? "%config(noreplace) " : "%config "
			       printf "%%attr(%s,%s,%s) %s%s\n", m, $2, $3, c, $5 }'
	} >"$tmp/x.spec"
	rpmbuild -bb --quiet --define "_topdir $tmp/top" --define "_rpmdir $tmp/out" \
		--define '_binary_payload w2.xzdio' --buildroot "$tmp/root" "$tmp/x.spec" >"$tmp/rpmbuild.log" 2>&1 ||
		{ cat "$tmp/rpmbuild.log" >&2; rm -rf "$tmp"; return 1; }
	mv "$(find "$tmp/out" -name '*.rpm' | head -n 1)" "$2"
	rm -rf "$tmp"
}
# R2: a new packaged default in app.yml (the scenarios edit it: .dpkg-dist / .rpmnew)
# and in tasks.yml (nobody edits it: replaced silently).
# shellcheck disable=SC2317 # run by repack_deb/repack_rpm
edit_r2() {
	printf '%s\n' '# New in the next release: the packaged default of app.yml changed (test fixture).' >>etc/oneiric/app.yml
	printf '%s\n' '# New in the next release: tasks.yml changed too (test fixture).' >>etc/oneiric/tasks.yml
}
# R3: on top of R2, a default events.yml the settings loader refuses (an unknown key):
# the new version's `health --pre-start` fails.
# shellcheck disable=SC2317 # run by repack_deb/repack_rpm
edit_r3() {
	edit_r2
	printf '%s\n' 'retention_days: 7   # unknown key: this release fails health --pre-start (test fixture)' >>etc/oneiric/events.yml
}
# shellcheck disable=SC2317 # run through make_all
make_releases() {
	local dv rv
	dv=$(dpkg-deb -f "$DEB" Version)
	rv=$(rpm -qp --qf '%{VERSION}' "$RPM" 2>/dev/null)
	mkdir -p "$OUT/pkgs"
	cp "$DEB" "$OUT/pkgs/r1.deb"
	cp "$RPM" "$OUT/pkgs/r1.rpm"
	# 0.1.0-1 -> 0.1.0+next1-1: higher for dpkg; 0.1.0 -> 0.1.0+next1 for rpm.
	repack_deb "$DEB" "$OUT/pkgs/r2.deb" "${dv%-*}+next1-${dv##*-}" edit_r2 || return 1
	repack_deb "$DEB" "$OUT/pkgs/r3.deb" "${dv%-*}+next2-${dv##*-}" edit_r3 || return 1
	repack_rpm "$RPM" "$OUT/pkgs/r2.rpm" "$rv+next1" edit_r2 || return 1
	repack_rpm "$RPM" "$OUT/pkgs/r3.rpm" "$rv+next2" edit_r3 || return 1
	dpkg --compare-versions "$(dpkg-deb -f "$OUT/pkgs/r2.deb" Version)" gt "$dv" || { echo "R2 .deb not higher"; return 1; }
	local f
	for f in r2.deb r3.deb; do
		dpkg-deb --fsys-tarfile "$OUT/pkgs/$f" | tar -xO ./etc/oneiric/app.yml | grep '^# New in the next release' >/dev/null ||
			{ echo "$f: app.yml has no new default"; return 1; }
	done
	for f in r2.rpm r3.rpm; do
		rpm2cpio "$OUT/pkgs/$f" >"$OUT/pkgs/t.cpio" || true
		cpio -i --quiet --to-stdout ./etc/oneiric/app.yml <"$OUT/pkgs/t.cpio" | grep '^# New in the next release' >/dev/null ||
			{ echo "$f: app.yml has no new default"; return 1; }
	done
	rm -f "$OUT/pkgs/t.cpio"
}
# The test-only package that stands for the system in the Debian guest's rpm database.
# shellcheck disable=SC2317 # run through make_all
make_provides() {
	local tmp
	tmp=$(mktemp -d)
	{
		echo "Name: oneiric-vmtest-system-provides"
		echo "Version: 1"
		echo "Release: 1"
		echo "Summary: TEST ONLY: the system packages a Debian guest has, for rpm's database"
		echo "License: MIT"
		echo "BuildArch: noarch"
		rpm -qp --requires "$RPM" 2>/dev/null | grep -v '^rpmlib(' | awk '{ print $1 }' | sort -u | sed 's/^/Provides: /'
		echo "%description"
		echo "Test only (issue 17 VM scenario dnf): dnf on Debian sees an rpm database"
		echo "without glibc, sqlite or systemd; this package provides what the oneiric"
		echo ".rpm requires, which the Debian system has as .debs."
		echo "%files"
	} >"$tmp/p.spec"
	rpmbuild -bb --quiet --define "_topdir $tmp/top" --define "_rpmdir $tmp/out" "$tmp/p.spec" >"$tmp/log" 2>&1 ||
		{ cat "$tmp/log"; rm -rf "$tmp"; return 1; }
	mv "$(find "$tmp/out" -name '*.rpm' | head -n 1)" "$OUT/vmtest-system-provides.rpm"
	rm -rf "$tmp"
}

# --- keys and trees ------------------------------------------------------------------
export GNUPGHOME=$OUT/gnupg
KEY_A="" KEY_B=""
# shellcheck disable=SC2317 # run through make_all
make_keys() {
	gpgconf --kill gpg-agent 2>/dev/null || true
	rm -rf "$GNUPGHOME"
	mkdir -m 0700 "$GNUPGHOME"
	# Created "in 2025" so that the expired tree, signed at a faked 2026-01-01, is
	# signed after the key's creation.
	local who
	for who in A B; do
		gpg --batch --quiet --passphrase '' --faked-system-time 20250601T000000 \
			--quick-gen-key "Oneiric test archive key $who <test-$who@oneiric.invalid>" rsa3072 sign 5y 2>/dev/null ||
			{ echo "gpg --quick-gen-key $who failed"; return 1; }
	done
	fprs >"$OUT/keys.txt"
	[ "$(wc -l <"$OUT/keys.txt")" = 2 ] || { echo "expected two test keys"; return 1; }
}
fprs() { gpg --batch --with-colons --list-secret-keys 2>/dev/null | awk -F: '$1 == "sec" { s = 1; next } $1 == "fpr" && s { print $10; s = 0 }'; }
publish() { # publish NAME [publish.sh args...]
	local name=$1
	shift
	rm -rf "${OUT:?}/$name" "$OUT/.oneiric-publish-state.$name"
	"$REPO/packaging/publish.sh" --out "$OUT/$name" --base-url "file://$BASE/$name" "$@" >/dev/null
}
# BASE: where the trees are seen by apt/dnf (the guest reads them at /vmtest/repos).
BASE=${ONEIRIC_REPOS_BASE:-$OUT}
# shellcheck disable=SC2317 # run through make_all
make_trees() {
	local p=$OUT/pkgs sbom=()
	[ -z "${ONEIRIC_SBOM:-}" ] || sbom=(--sbom "$ONEIRIC_SBOM")
	# In the order the scenarios visit them, a second apart: apt treats a Release whose
	# Date is older than the one it has as unchanged (no rollback), as a real
	# repository's next publication is always newer.
	publish r1 --key "$KEY_A" "${sbom[@]}" "$p/r1.deb" "$p/r1.rpm" ${ARM64[@]+"${ARM64[@]}"} || return 1
	sleep 1
	publish r2 --key "$KEY_A" "$p/r2.deb" "$p/r2.rpm" || return 1
	sleep 1
	publish rot1 --key "$KEY_A" --ship-key "$KEY_B" --keyring-version 2 "$p/r2.deb" "$p/r2.rpm" || return 1
	sleep 1
	publish rot2 --key "$KEY_B" --ship-key "$KEY_A" --keyring-version 2 "$p/r2.deb" "$p/r2.rpm" || return 1
	sleep 1
	publish r3 --key "$KEY_B" --ship-key "$KEY_A" --keyring-version 2 "$p/r3.deb" "$p/r3.rpm" || return 1
	faketime '2026-01-01 00:00:00' "$REPO/packaging/publish.sh" --out "$OUT/expired" --base-url "file://$BASE/expired" \
		--valid-for 7d --key "$KEY_A" "$p/r1.deb" >/dev/null || { echo "publishing the expired tree failed"; return 1; }
	rm -rf "$OUT"/.oneiric-publish-state.*
	# A bad publisher's tree: R3's .rpm unsigned, the metadata regenerated and signed.
	rm -rf "$OUT/unsigned"
	mkdir -p "$OUT/unsigned/rpm"
	cp -a "$OUT/r2/keys" "$OUT/unsigned/"
	cp "$p/r3.rpm" "$OUT/unsigned/rpm/"
	createrepo_c --quiet "$OUT/unsigned/rpm" >/dev/null || { echo "createrepo_c (unsigned tree) failed"; return 1; }
	gpg --batch --yes --quiet --local-user "$KEY_A" --armor --detach-sign \
		--output "$OUT/unsigned/rpm/repodata/repomd.xml.asc" "$OUT/unsigned/rpm/repodata/repomd.xml" ||
		{ echo "signing the unsigned tree's metadata failed"; return 1; }
}
make_all() {
	local t0=$SECONDS
	make_releases || { echo "making R2/R3 failed"; return 1; }
	make_provides || { echo "making the provides .rpm failed"; return 1; }
	make_keys || return 1
	{ read -r KEY_A && read -r KEY_B; } <"$OUT/keys.txt"
	make_trees || return 1
	echo "trees in $OUT ($((SECONDS - t0)) s)"
}
if ! made=$(make_all 2>&1); then
	t_fail repo-publish "$(printf '%s\n' "$made" | tail -n 1)"
	printf '%s\n' "$made" | tail -n 20 | sed 's/^/    /'
	t_finish
fi
t_pass repo-publish
t_log "$made"
[ "$MODE" = make ] && t_finish
{ read -r KEY_A && read -r KEY_B; } <"$OUT/keys.txt"

# --- checks ----------------------------------------------------------------------------
W=$OUT/check
rm -rf "$W"
mkdir -p "$W"
# An apt of its own: lists, cache, sources and status under $W/apt, nothing of the host's.
# apt_update TREE [KEYRING]: apt-get update against TREE's apt/ as a user's deb822 source.
A=$W/apt
# APT_CONFIG: none of the host's apt.conf.d (this machine sets Check-Valid-Until false,
# a user's system does not), only apt's defaults and these directories.
APTOPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$A/etc/sources.list.d"
	-o "Dir::Etc::Trusted=/dev/null" -o "Dir::Etc::TrustedParts=$A/none"
	-o "Dir::State=$A/state" -o "Dir::State::status=$A/status" -o "Dir::Cache=$A/cache"
	-o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
export APT_CONFIG=$W/apt.conf
# shellcheck disable=SC2317 # called from checks run through t_check
apt_update() {
	local kr=${2:-$OUT/$1/keys/oneiric-archive-keyring.gpg}
	rm -rf "$A"
	mkdir -p "$A/etc/sources.list.d" "$A/etc/apt.conf.d" "$A/etc/preferences.d" "$A/state/lists/partial" "$A/cache/archives/partial"
	touch "$A/status"
	printf 'Dir::Etc "%s/etc";\nDir::Etc::Parts "%s/etc/apt.conf.d";\n' "$A" "$A" >"$APT_CONFIG"
	printf 'Types: deb\nURIs: file://%s/%s/apt\nSuites: stable\nComponents: main\nSigned-By: %s\n' "$OUT" "$1" "$kr" \
		>"$A/etc/sources.list.d/oneiric.sources"
	apt-get "${APTOPTS[@]}" update 2>&1
}
# shellcheck disable=SC2317 # run through t_check
apt_clean() {
	local out
	out=$(apt_update r1) || { echo "$out"; echo "apt-get update failed"; return 1; }
	if grep -E '^(W|E|N): ' <<<"$out"; then echo "apt-get update printed warnings"; return 1; fi
	out=$(apt-cache "${APTOPTS[@]}" policy oneiric 2>&1)
	grep -q "Candidate: $(dpkg-deb -f "$DEB" Version)\$" <<<"$out" ||
		{ echo "$out"; echo "apt-cache policy shows no candidate oneiric $(dpkg-deb -f "$DEB" Version)"; return 1; }
	echo "apt-get update: no warnings; oneiric $(dpkg-deb -f "$DEB" Version) is the candidate"
}
t_check repo-apt-update-clean apt_clean
# shellcheck disable=SC2317 # run through t_check
apt_release_fields() {
	local r=$OUT/r1/apt/dists/stable
	grep -q '^Valid-Until: ' "$r/Release" || { echo "no Valid-Until"; return 1; }
	grep -q '^SHA256:' "$r/Release" || { echo "no SHA256 hashes"; return 1; }
	zgrep -q '^usr/bin/oneiric[[:space:]]' "$r/main/Contents-amd64.gz" 2>/dev/null ||
		{ echo "no Contents-amd64.gz listing usr/bin/oneiric"; return 1; }
	gpgv --keyring "$OUT/r1/keys/oneiric-archive-keyring.gpg" "$r/InRelease" 2>/dev/null || { echo "InRelease does not verify"; return 1; }
	gpgv --keyring "$OUT/r1/keys/oneiric-archive-keyring.gpg" "$r/Release.gpg" "$r/Release" 2>/dev/null ||
		{ echo "Release.gpg does not verify"; return 1; }
	# No SHA-1 signature digest (apt's "weak digest" warning).
	gpg --batch --list-packets "$r/Release.gpg" 2>/dev/null | grep 'digest algo 10' >/dev/null || { echo "Release.gpg is not SHA512"; return 1; }
}
t_check repo-apt-release apt_release_fields
# shellcheck disable=SC2317 # run through t_check
both_archs() { # R1 carries the arm64 packages beside the x86_64 ones, with the same version
	local r=$OUT/r1/apt/dists/stable v out a amd64_only=("${APTOPTS[@]}")
	v=$(dpkg-deb -f "${ARM64[0]}" Version)
	{ grep -q '^Architectures:.* amd64' "$r/Release" && grep -q '^Architectures:.* arm64' "$r/Release"; } ||
		{ echo "Release: $(grep '^Architectures:' "$r/Release")"; return 1; }
	for a in amd64 arm64; do
		awk -v a="$a" '$1 == "Package:" { p = $2 } $1 == "Architecture:" && p == "oneiric" && $2 == a { f = 1 } END { exit !f }' \
			"$r/main/binary-$a/Packages" || { echo "binary-$a/Packages lists no oneiric for $a"; return 1; }
		zgrep -q '^usr/bin/oneiric[[:space:]]' "$r/main/Contents-$a.gz" 2>/dev/null || { echo "no Contents-$a.gz listing usr/bin/oneiric"; return 1; }
	done
	# An arm64 system's apt (APT::Architecture) fetches binary-arm64 and sees that package.
	APTOPTS+=(-o APT::Architecture=arm64 -o APT::Architectures=arm64)
	out=$(apt_update r1) || { APTOPTS=("${amd64_only[@]}"); echo "$out" | tail -n 2; echo "apt-get update (arm64) failed"; return 1; }
	out=$(apt-cache "${APTOPTS[@]}" policy oneiric 2>&1)
	APTOPTS=("${amd64_only[@]}")
	grep -q "Candidate: $v\$" <<<"$out" || { echo "$out" | tail -n 3; echo "no arm64 candidate oneiric $v"; return 1; }
	out=$(zcat "$OUT/r1/rpm/repodata/"*-primary.xml.gz 2>/dev/null | grep -o '<arch>[^<]*</arch>' | sort -u | tr '\n' ' ')
	{ grep -q '<arch>aarch64</arch>' <<<"$out" && grep -q '<arch>x86_64</arch>' <<<"$out"; } ||
		{ echo "repodata primary lists arches: $out"; return 1; }
	echo "apt: oneiric $v for amd64 and arm64 (an arm64 apt's candidate); dnf: $out"
}
if [ ${#ARM64[@]} -gt 0 ]; then
	t_check repo-both-architectures both_archs
elif [ "${ONEIRIC_PKG_ARM64:-}" = later ]; then
	# tests/run-all.sh's default plan: its packaging-arm64 stage runs this check with both.
	echo "repo-both-architectures: checked by the packaging-arm64 stage"
else
	t_skip repo-both-architectures "no arm64 packages given"
fi
# shellcheck disable=SC2317 # run through t_check
apt_refuses() { # apt_refuses TREE PATTERN: apt-get update fails and says PATTERN
	local out
	if out=$(apt_update "$1"); then echo "$out" | tail -n 3; echo "apt-get update succeeded on $1"; return 1; fi
	grep -Eq "$2" <<<"$out" || { echo "$out" | tail -n 3; echo "no '$2' in apt's output"; return 1; }
	grep -E "$2" <<<"$out" | head -n 1
}
# Tampered: one byte of the signed text of InRelease changed (a package hash).
cp -a "$OUT/r1" "$OUT/tampered"
sed -i '0,/^ [0-9a-f]\{64\} /s/^ \([0-9a-f]\)/ f\1/; 0,/^ f[0-9a-f]\{64\} /s/^ f[0-9a-f]\([0-9a-f]\{63\}\)/ f\1/' "$OUT/tampered/apt/dists/stable/InRelease"
cmp -s "$OUT/r1/apt/dists/stable/InRelease" "$OUT/tampered/apt/dists/stable/InRelease" && t_fail repo-apt-tampered "the tampering changed nothing"
t_check repo-apt-tampered apt_refuses tampered 'BADSIG|signatures were invalid|not signed'
t_check repo-apt-expired apt_refuses expired 'no longer valid|expired'
# shellcheck disable=SC2317 # run through t_check
apt_other_key() { # a tree signed by B alone is refused by a keyring of A alone
	local out
	if out=$(apt_update rot2 "$OUT/r1/keys/oneiric-archive-keyring.gpg"); then echo "accepted a tree signed by another key"; return 1; fi
	grep -Eq 'NO_PUBKEY|not signed|signatures couldn.t be verified|Missing key' <<<"$out" || { echo "$out" | tail -n 2; return 1; }
	out=$(apt_update rot2 "$OUT/rot1/keys/oneiric-archive-keyring.gpg") || { echo "$out" | tail -n 2; echo "keyring 2 does not accept the tree signed by B"; return 1; }
	! grep -E '^(W|E): ' <<<"$out" || return 1
	echo "keyring 1 refuses the B-signed tree; keyring 2 (A+B) accepts it"
}
t_check repo-apt-rotation apt_other_key

# shellcheck disable=SC2317 # run through t_check
rpm_k() { # every published .rpm verifies against the published key; unsigned ones do not
	local db=$W/rpmdb f out n=0
	rm -rf "$db"
	mkdir -p "$db"
	rpm --dbpath "$db" --import "$OUT/rot1/keys/oneiric-archive-keyring.asc" || { echo "rpm --import failed"; return 1; }
	for f in "$OUT"/{r1,r2,r3,rot1,rot2}/rpm/*.rpm; do
		out=$(rpm --dbpath "$db" -K "$f" 2>&1) || { echo "$out"; return 1; }
		grep -q 'signatures OK' <<<"$out" || { echo "not signed: $out"; return 1; }
		n=$((n + 1))
	done
	out=$(rpm --dbpath "$db" -K "$RPM" 2>&1)
	! grep -q 'signatures OK' <<<"$out" || { echo "the unsigned input verifies as signed?"; return 1; }
	cp "$(find "$OUT/r1/rpm" -name 'oneiric-*.rpm' | head -n 1)" "$W/t.rpm"
	printf 'X' | dd of="$W/t.rpm" bs=1 seek=$(($(stat -c %s "$W/t.rpm") - 100)) conv=notrunc 2>/dev/null
	if rpm --dbpath "$db" -K "$W/t.rpm" >/dev/null 2>&1; then echo "a corrupted package verifies"; return 1; fi
	echo "rpm -K: $n packages, digests signatures OK"
}
t_check repo-rpm-K rpm_k
# shellcheck disable=SC2317 # run through t_check
rpm_repo() {
	local r=$OUT/r1
	gpgv --keyring "$r/keys/oneiric-archive-keyring.gpg" "$r/rpm/repodata/repomd.xml.asc" "$r/rpm/repodata/repomd.xml" 2>/dev/null ||
		{ echo "repomd.xml.asc does not verify"; return 1; }
	grep -q 'oneiric' <(zcat "$r"/rpm/repodata/*-primary.xml.gz) || { echo "primary.xml lists no oneiric"; return 1; }
	local l
	for l in 'gpgcheck=1' 'repo_gpgcheck=1' 'skip_if_unavailable=False' 'gpgkey=.*/keys/oneiric-archive-keyring.asc'; do
		grep -qx "$l" "$r/oneiric.repo" || { echo "oneiric.repo lacks $l"; return 1; }
	done
	cp "$r/rpm/repodata/repomd.xml" "$W/repomd.xml"
	sed -i 's/<revision>/<revision>1/' "$W/repomd.xml"
	if gpgv --keyring "$r/keys/oneiric-archive-keyring.gpg" "$r/rpm/repodata/repomd.xml.asc" "$W/repomd.xml" 2>/dev/null; then
		echo "a changed repomd.xml verifies"; return 1
	fi
}
t_check repo-rpm-metadata rpm_repo
# shellcheck disable=SC2317 # run through t_check
sums() {
	local r=$OUT/r1 n
	gpgv --keyring "$r/keys/oneiric-archive-keyring.gpg" "$r/SHA256SUMS.asc" "$r/SHA256SUMS" 2>/dev/null || { echo "SHA256SUMS.asc does not verify"; return 1; }
	(cd "$r" && sha256sum --quiet -c SHA256SUMS) || return 1
	n=$(cd "$r" && find . -type f ! -name 'SHA256SUMS*' | wc -l)
	[ "$n" = "$(wc -l <"$r/SHA256SUMS")" ] || { echo "SHA256SUMS lists $(wc -l <"$r/SHA256SUMS") of $n files"; return 1; }
	echo "SHA256SUMS: $n files, signed"
}
t_check repo-sha256sums sums
# shellcheck disable=SC2317 # run through t_check
keyring_pkg() {
	local k1 k2
	k1=$OUT/r1/apt/pool/main/o/oneiric-archive-keyring/oneiric-archive-keyring_1_all.deb
	k2=$OUT/rot1/apt/pool/main/o/oneiric-archive-keyring/oneiric-archive-keyring_2_all.deb
	if [ ! -f "$k1" ] || [ ! -f "$k2" ]; then echo "no keyring packages in the pools"; return 1; fi
	dpkg-deb -c "$k1" | grep ' ./usr/share/keyrings/oneiric-archive-keyring.gpg$' >/dev/null || { echo "keyring .deb lacks the keyring"; return 1; }
	lintian --no-cfg --display-level '>=warning' "$k1" "$k2" >"$W/lintian-keyring.txt" 2>&1
	! grep -E '^[EW]: ' "$W/lintian-keyring.txt" || return 1
	[ "$(dpkg-deb --fsys-tarfile "$k2" | tar -xO ./usr/share/keyrings/oneiric-archive-keyring.gpg | gpg --batch --with-colons --show-keys 2>/dev/null | grep -c '^pub:')" = 2 ] ||
		{ echo "keyring 2 does not hold two keys"; return 1; }
	echo "keyring 1 (A), keyring 2 (A+B), lintian clean"
}
t_check repo-keyring-package keyring_pkg
# shellcheck disable=SC2317 # run through t_check
sbom_ok() {
	local f
	f=$(find "$OUT/r1/sbom" -name '*.cdx.json' 2>/dev/null | head -n 1)
	[ -n "$f" ] || { echo "no SBOM published (ONEIRIC_SBOM unset or sbom.sh failed)"; return 1; }
	grep -q '"bomFormat": *"CycloneDX"' "$f" || { echo "$f is not CycloneDX"; return 1; }
	grep -q '"name": *"oneiric"' "$f" || { echo "$f names no oneiric component"; return 1; }
	echo "$(basename "$f"): $(grep -c '"purl"' "$f") components with a purl"
}
t_check repo-sbom sbom_ok
rm -rf "$OUT/tampered"
t_finish
