#!/bin/sh
# tests/nix/run.sh - the Nix checks that can run without nixpkgs (part of CI).
#
#   sh tests/nix/run.sh            # as root, on Debian 12 or newer
#   NIXPKGS_LIB=/path/to/nixpkgs.lib sh tests/nix/run.sh
#   ONEIRIC_NIX_PACKAGE=/tmp/old-package.nix sh tests/nix/run.sh   # check another package.nix
#
# Without nixpkgs (everywhere; Debian's nix-bin, installed with apt-get when missing):
# 1. Every .nix file in the repository parses (`nix-instantiate --parse`); `sh -n` on the
#    scripts; tests/nix/compare-unit.sh (the drift comparator) accepts the packaged units
#    (oneiric.service, oneiric.socket) and reports a changed directive in each.
# 2. Source set: every file cargo and the tests need (Cargo.toml targets, their modules,
#    include_str!/include_bytes! targets, src/, tests/fixtures/, files the tests read through
#    CARGO_MANIFEST_DIR) is in the Nix package's source (tests/nix/source-set.nix: package.nix
#    evaluated with a stub lib.fileset by the host's Nix, on a copy of the tree without
#    target/ and .git, as a flake's source is).
# 3. The project's address is one setting: Cargo.toml's `repository`; `homepage` and every
#    other https://github.com/<owner>/oneiric in the tree must agree with it.
# With a checkout of nixpkgs' lib (NIXPKGS_LIB=/path, or /var/tmp/nixpkgs-lib; e.g. the
# nix-community/nixpkgs.lib repository):
# 4. The source set again, listed by the real lib.fileset.toList; the flake's outputs for
#    x86_64-linux and aarch64-linux (tests/nix/eval-flake.nix: package platforms and source,
#    cargo-test's source, dev shell, overlay, VM test files); the module evaluated with stub
#    NixOS options in several configurations (tests/nix/eval-module.nix), as nixos-module/ on
#    x86_64-linux and as the flake's nixosModules.default on aarch64-linux, plus every node of
#    every VM test on both; the service and the socket it renders compared with
#    packaging/oneiric.service + oneiric.service.d/ and packaging/oneiric.socket (no drift),
#    other configurations with copies of them changed by exactly the documented differences,
#    and both following an edit of the files.
#    nixpkgs' lib needs Nix >= 2.18: when the host's Nix is older (Debian 12 has 2.8), this
#    runs in a Debian 13 chroot with its nix-bin, built with debootstrap on first use and kept
#    in $ONEIRIC_NIX_CHROOT (default /var/tmp/oneiric-nix-chroot). Without a lib checkout
#    these checks are one SKIP line, with the reason.
#
# Not here (they need nixpkgs and its binary cache): building the package, `nix flake check`,
# the VM tests. See nixos-module/README.md.
#
# Output (tests/lib.sh): one line per check (PASS name / FAIL name: reason / SKIP name: reason),
# then "N passed, N failed[, N skipped]". Exit status 1 when anything failed.
set -u
LC_ALL=C
export LC_ALL

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
chroot_dir=${ONEIRIC_NIX_CHROOT:-/var/tmp/oneiric-nix-chroot}
tmp=$(mktemp -d /tmp/oneiric-nix-run.XXXXXX)
log=$tmp/log
: >"$log"
proc_mounted=
T_LOG_TAG=nix
T_APT_LOG=$log
# shellcheck source=tests/lib.sh
. "$repo/tests/lib.sh"

# shellcheck disable=SC2317 # called by the trap
cleanup() {
	if [ -n "$proc_mounted" ]; then umount "$chroot_dir/proc" 2>/dev/null || true; fi
	rm -rf "$chroot_dir/work/oneiric-nix-check"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The line of an error output that says what is wrong, for a FAIL reason (Nix puts its
# message on the last "error: ..." line, after the trace).
first_line() {
	l=$(grep -E 'error: *[^ ]' "$1" | tail -n1 | sed 's/^[[:space:]]*//')
	[ -n "$l" ] || l=$(grep -v '^[[:space:]]*$' "$1" | head -n1)
	printf '%s\n' "$l"
}
tail_log() { tail -n 5 "$log" | tr '\n' ' '; }
# Relays a report (PASS/FAIL lines) with a prefix, counting.
relay() {
	while IFS= read -r line; do
		case $line in
		"PASS "*) t_pass "$1${line#PASS }" ;;
		"FAIL "*) r=${line#FAIL }; t_fail "$1${r%%: *}" "${r#*: }" ;;
		esac
	done
}

# ---- 1. parse every .nix file ---------------------------------------------------------------
if ! command -v nix-instantiate >/dev/null 2>&1; then
	if ! t_apt_install nix-bin || ! command -v nix-instantiate >/dev/null 2>&1; then
		t_fail "install nix-bin" "apt-get install nix-bin failed: $(tail_log)"
		t_finish
	fi
fi
host_nix=$(nix-instantiate --version 2>/dev/null | awk '{print $NF}')

find "$repo" -name '*.nix' -not -path '*/target/*' -not -path '*/.git/*' -not -path '*/node_modules/*' |
	LC_ALL=C sort >"$tmp/nixfiles"
if [ ! -s "$tmp/nixfiles" ]; then
	t_fail "parse .nix files" "no .nix file found under $repo"
fi
while read -r f; do
	name=${f#"$repo"/}
	if nix-instantiate --parse "$f" >/dev/null 2>"$tmp/err"; then
		t_pass "parse $name (nix $host_nix)"
	else
		t_fail "parse $name" "$(first_line "$tmp/err")"
	fi
done <"$tmp/nixfiles"

for s in "$here/run.sh" "$here/compare-unit.sh"; do
	if sh -n "$s" 2>"$tmp/err"; then t_pass "sh -n ${s#"$repo"/}"; else t_fail "sh -n ${s#"$repo"/}" "$(first_line "$tmp/err")"; fi
done

# ---- 2. the drift comparator itself -------------------------------------------------------
{
	cat "$repo/packaging/oneiric.service"
	# In C-locale order, as compare-unit.sh applies them.
	for d in "$repo"/packaging/oneiric.service.d/*.conf; do
		[ -f "$d" ] && { echo; cat "$d"; }
	done
	# The unit's `#systemd>=N Directive=value` lines, active (every N: no version given).
	if grep -q '^#systemd>=[0-9]' "$repo/packaging/oneiric.service"; then
		printf '\n[Service]\n'
		sed -n 's/^#systemd>=[0-9][0-9]* //p' "$repo/packaging/oneiric.service"
	fi
} >"$tmp/same.service"
sed 's/^\(Restart\)=.*/\1=always/' "$tmp/same.service" >"$tmp/changed.service"
cp "$repo/packaging/oneiric.socket" "$tmp/same.socket"
sed 's/^\(Backlog\)=.*/\1=1/' "$tmp/same.socket" >"$tmp/changed.socket"
# comparator_check UNIT KEY: the packaged UNIT is accepted, the copy with KEY changed is not.
comparator_check() {
	name="compare-unit.sh accepts the packaged $1 and reports a changed directive ($2)"
	if ! ONEIRIC_UNIT=$1 sh "$here/compare-unit.sh" "$repo/packaging" "$tmp/same.${1#*.}" /usr/bin/oneiric >"$tmp/out" 2>&1; then
		t_fail "$name" "the packaged unit itself: $(head -n3 "$tmp/out" | tr '\n' ' ')"
	elif ONEIRIC_UNIT=$1 sh "$here/compare-unit.sh" "$repo/packaging" "$tmp/changed.${1#*.}" /usr/bin/oneiric >"$tmp/out" 2>&1; then
		t_fail "$name" "the changed $2 was not reported"
	elif ! grep -q "$2" "$tmp/out"; then
		t_fail "$name" "$(head -n3 "$tmp/out" | tr '\n' ' ')"
	else
		t_pass "$name"
	fi
}
comparator_check oneiric.service Restart
comparator_check oneiric.socket Backlog
# [Install] Also=: dropped only for a unit ONEIRIC_INSTALLED names (NixOS has no Also=).
grep -v '^Also=' "$tmp/same.service" >"$tmp/noalso.service"
name="compare-unit.sh: Also=oneiric.socket is not compared when the NixOS side installs oneiric.socket, reported when it does not"
if ! ONEIRIC_INSTALLED="oneiric.service oneiric.socket oneiric-admin.socket" sh "$here/compare-unit.sh" "$repo/packaging" "$tmp/noalso.service" /usr/bin/oneiric >"$tmp/out" 2>&1; then
	t_fail "$name" "with oneiric.socket installed: $(head -n3 "$tmp/out" | tr '\n' ' ')"
elif ONEIRIC_INSTALLED="oneiric.service" sh "$here/compare-unit.sh" "$repo/packaging" "$tmp/noalso.service" /usr/bin/oneiric >"$tmp/out" 2>&1 ||
	! grep -q 'Also' "$tmp/out"; then
	t_fail "$name" "without oneiric.socket: $(head -n3 "$tmp/out" | tr '\n' ' ')"
else
	t_pass "$name"
fi

# ---- 3. the source set, without nixpkgs ---------------------------------------------------
# A copy of the tree as a flake's source is (no target/, no .git), with ONEIRIC_NIX_PACKAGE as
# its nixos-module/package.nix when given.
tree=$tmp/tree
mkdir -p "$tree"
tar -C "$repo" --exclude=./target --exclude=./.git --exclude=./result -cf - . | tar -C "$tree" -xf -
package_under_test=nixos-module/package.nix
if [ -n "${ONEIRIC_NIX_PACKAGE:-}" ]; then
	cp "$ONEIRIC_NIX_PACKAGE" "$tree/nixos-module/package.nix"
	package_under_test=$ONEIRIC_NIX_PACKAGE
	t_log "checking $ONEIRIC_NIX_PACKAGE as nixos-module/package.nix"
fi
host_eval() {
	# host_eval FILE ATTR [ARGS...] -> stdout: the raw string (the host's Nix, any version >= 2.4)
	file=$1 attr=$2
	shift 2
	env HOME="$tmp" nix --extra-experimental-features nix-command eval --raw --file "$file" "$@" "$attr" 2>"$tmp/err.raw"
	rc=$?
	grep -v "build-users-group' does not exist" "$tmp/err.raw" >"$tmp/err"
	return $rc
}
if host_eval "$tree/tests/nix/source-set.nix" report >"$tmp/report"; then
	relay "source set, $package_under_test, nix $host_nix: " <"$tmp/report"
	if host_eval "$tree/tests/nix/source-set.nix" outside --apply 'l: builtins.concatStringsSep "" (map (o: o + "\n") l)' >"$tmp/outside" && [ -s "$tmp/outside" ]; then
		while IFS= read -r o; do t_log "outside the repository, so in no source set (the tests must skip without it): $o"; done <"$tmp/outside"
	fi
else
	t_fail "source set, $package_under_test: package.nix and tests/nix/source-set.nix evaluate (nix $host_nix)" "$(first_line "$tmp/err")"
fi

# ---- 4. the project's address: one setting -------------------------------------------------
# Cargo.toml [package] repository; homepage (cargo-deb's Homepage:) must equal it, and every
# https://github.com/<owner>/oneiric elsewhere (debian/copyright, CHANGELOG.md links, docs)
# must be it. The Nix package's meta.homepage reads it from Cargo.toml.
toml_value() {
	awk -v key="$1" '
		/^[[:space:]]*\[/ { in_pkg = ($0 ~ /^[[:space:]]*\[package\][[:space:]]*$/); next }
		in_pkg && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
			v = $0; sub(/^[^=]*=[[:space:]]*"/, "", v); sub(/".*$/, "", v); print v; exit
		}' "$repo/Cargo.toml"
}
repository=$(toml_value repository)
homepage=$(toml_value homepage)
if [ -z "$repository" ]; then
	t_fail "the project's address is one setting" "Cargo.toml [package] has no repository"
elif [ -n "$homepage" ] && [ "$homepage" != "$repository" ]; then
	t_fail "the project's address is one setting" "Cargo.toml homepage ($homepage) differs from repository ($repository)"
else
	grep -rnoE 'https?://github\.com/[A-Za-z0-9_.-]+/oneiric[A-Za-z0-9_.-]*' \
		--exclude-dir=target --exclude-dir=.git --exclude=Cargo.lock "$repo" 2>/dev/null |
		while IFS= read -r l; do
			m=${l#*:*:}
			case $m in "$repository" | "$repository.git") ;; *) printf '%s\n' "${l#"$repo"/}" ;; esac
		done >"$tmp/stale"
	if [ -s "$tmp/stale" ]; then
		t_fail "the project's address is one setting (Cargo.toml repository = $repository)" "$(wc -l <"$tmp/stale") other address(es): $(head -n 4 "$tmp/stale" | tr '\n' ' ')"
	else
		t_pass "the project's address is one setting: Cargo.toml repository = $repository ($(grep -rlF "$repository" --exclude-dir=target --exclude-dir=.git "$repo" | wc -l) files agree)"
	fi
	case $repository in *your-org*) t_log "Cargo.toml repository is still the placeholder $repository: set the real address there (and in the files this check lists)" ;; esac
fi

# ---- 5. evaluation with nixpkgs' lib ------------------------------------------------------
lib_src=${NIXPKGS_LIB:-}
if [ -z "$lib_src" ] && [ -d /var/tmp/nixpkgs-lib ]; then lib_src=/var/tmp/nixpkgs-lib; fi
evaluation="module evaluation, unit drift and flake outputs"
if [ -z "$lib_src" ]; then
	t_skip "$evaluation" "no checkout of nixpkgs' lib (set NIXPKGS_LIB=/path, e.g. a checkout of nix-community/nixpkgs.lib, or put one at /var/tmp/nixpkgs-lib); only the checks that need no nixpkgs ran"
	t_finish
fi
if [ -f "$lib_src/lib/default.nix" ]; then
	lib_dir=$lib_src/lib
elif [ -f "$lib_src/default.nix" ] && [ -f "$lib_src/trivial.nix" ]; then
	lib_dir=$lib_src
else
	t_fail "$evaluation" "NIXPKGS_LIB=$lib_src holds no nixpkgs lib (no lib/default.nix)"
	t_finish
fi

# Nix >= 2.18 on the host (e.g. Debian 13) is used directly; otherwise the trixie chroot.
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
if version_ge "$host_nix" 2.18; then
	work=$tmp/work
	run_nix() { env HOME="$tmp" nix --extra-experimental-features nix-command "$@"; }
else
	work_in=/work/oneiric-nix-check
	work=$chroot_dir$work_in
	if [ ! -f "$chroot_dir/.oneiric-nix-ready" ]; then
		t_log "building a Debian 13 chroot with Nix >= 2.18 in $chroot_dir (about 3 minutes, once)"
		mirror=$(awk '
			/^[[:space:]]*$/ { if (u != "" && s !~ /security/) { print u; exit } u = ""; s = ""; next }
			/^URIs:/ { u = $2 } /^Suites:/ { s = $0 }
			END { if (u != "" && s !~ /security/) print u }' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
		if [ -z "$mirror" ]; then
			mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
				/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
		fi
		if [ -z "$mirror" ]; then
			t_fail "$evaluation" "no Debian mirror found in /etc/apt/sources.list{,.d} for debootstrap"
			t_finish
		fi
		if ! command -v debootstrap >/dev/null 2>&1 && ! t_apt_install debootstrap; then
			t_fail "$evaluation" "apt-get install debootstrap failed: $(tail_log)"
			t_finish
		fi
		rm -rf "$chroot_dir.tmp"
		if ! debootstrap --variant=minbase trixie "$chroot_dir.tmp" "$mirror" >>"$log" 2>&1; then
			t_fail "$evaluation" "debootstrap trixie from $mirror failed: $(tail_log)"
			t_finish
		fi
		# nix-bin with apt inside the chroot (debootstrap --include trips on a virtual dependency).
		if ! chroot "$chroot_dir.tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nix-bin >>"$log" 2>&1; then
			t_fail "$evaluation" "apt-get install nix-bin in the trixie chroot failed: $(tail_log)"
			t_finish
		fi
		touch "$chroot_dir.tmp/.oneiric-nix-ready"
		rm -rf "$chroot_dir"
		mv "$chroot_dir.tmp" "$chroot_dir"
	fi
	if ! mountpoint -q "$chroot_dir/proc"; then
		mount -t proc proc "$chroot_dir/proc" && proc_mounted=1
	fi
	run_nix() {
		chroot "$chroot_dir" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
			nix --extra-experimental-features nix-command "$@"
	}
fi

rm -rf "$work"
mkdir -p "$work/repo"
cp -a "$tree/." "$work/repo/"
cp -a "$lib_dir" "$work/lib"
w=${work_in:-$work}

eval_nix() {
	# eval_nix FILE ATTR [ARGS...] -> stdout: the raw string
	file=$1 attr=$2
	shift 2
	run_nix eval --raw --option substituters '' --file "$w/repo/tests/nix/$file" --arg lib "import $w/lib" "$@" "$attr"
}
nix_version=$(run_nix --version 2>/dev/null | awk '{print $NF}')

# The source set as nixpkgs' lib.fileset computes it.
if eval_nix source-set.nix report >"$tmp/report" 2>"$tmp/err"; then
	relay "source set, $package_under_test, nix $nix_version: " <"$tmp/report"
else
	t_fail "source set, $package_under_test: evaluates with nixpkgs' lib (nix $nix_version)" "$(first_line "$tmp/err")"
fi

if eval_nix eval-flake.nix report >"$tmp/report" 2>"$tmp/err"; then
	relay "flake (nix $nix_version): " <"$tmp/report"
else
	t_fail "flake outputs evaluate (nix $nix_version)" "$(first_line "$tmp/err")"
fi

# The VM tests' Python scripts compile (they run in the NixOS test driver, not here).
if ! command -v python3 >/dev/null 2>&1; then
	t_skip "VM test scripts compile" "no python3 on this machine"
elif eval_nix eval-flake.nix testScripts >"$tmp/tests" 2>"$tmp/err"; then
	while IFS= read -r t; do
		[ -n "$t" ] || continue
		if ! eval_nix eval-flake.nix testScript --apply "f: f \"$t\"" >"$tmp/$t.py" 2>"$tmp/err"; then
			t_fail "VM test $t: testScript evaluates" "$(first_line "$tmp/err")"
		elif ! grep -q 'subtest' "$tmp/$t.py"; then
			t_fail "VM test $t: testScript evaluates" "empty or without subtests"
		elif python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' "$tmp/$t.py" 2>"$tmp/err"; then
			t_pass "VM test $t: testScript evaluates and compiles (python3)"
		else
			t_fail "VM test $t: testScript compiles" "$(tail -n1 "$tmp/err")"
		fi
	done <"$tmp/tests"
else
	t_fail "list the VM tests" "$(first_line "$tmp/err")"
fi

# Each configuration: as nixos-module/ on x86_64-linux, and as the flake's nixosModules.default
# (which picks packages.<system>.default) on aarch64-linux; userborn through the flake on both.
scenarios="default custom settings-direct attrs-manifest runtime-manifest no-manifest http-refused userborn socket-address http-disabled no-socket socket-hostname-refused socket-http-port-refused"
variants="x86_64-linux:module aarch64-linux:flake"
module_eval() {
	# module_eval VARIANT SCENARIO ATTR
	case $1 in *:flake) fl=true ;; *) fl=false ;; esac
	eval_nix eval-module.nix "$3" --argstr scenario "$2" --argstr system "${1%%:*}" --arg flake "$fl"
}
label() { case $1 in x86_64-linux:module) echo "$2" ;; *) echo "$2, ${1%%:*}, ${1#*:}" ;; esac; }
for v in $variants x86_64-linux:flake; do
	for s in $scenarios; do
		case $v in x86_64-linux:flake) [ "$s" = userborn ] || continue ;; esac
		if module_eval "$v" "$s" report >"$tmp/report" 2>"$tmp/err"; then
			relay "module[$(label "$v" "$s")]: " <"$tmp/report"
		else
			t_fail "module[$(label "$v" "$s")] evaluates" "$(first_line "$tmp/err")"
		fi
	done
done

# Each node of each VM test, evaluated against the module with the same stubs, on both systems.
if eval_nix eval-module.nix vmScenarios >"$tmp/vms" 2>"$tmp/err"; then
	for v in $variants; do
		while IFS= read -r s; do
			[ -n "$s" ] || continue
			if module_eval "$v" "$s" report >"$tmp/report" 2>"$tmp/err"; then
				relay "module[$(label "$v" "$s")]: " <"$tmp/report"
			else
				t_fail "module[$(label "$v" "$s")] evaluates" "$(first_line "$tmp/err")"
			fi
		done <"$tmp/vms"
	done
else
	t_fail "list the VM tests' nodes" "$(first_line "$tmp/err")"
fi

for v in $variants; do
	if module_eval "$v" bad-section report >/dev/null 2>"$tmp/err"; then
		t_fail "module rejects an unknown settings section (${v%%:*}, ${v#*:})" "settings.nonsense evaluated without error"
	elif grep -q "nonsense" "$tmp/err"; then
		t_pass "module rejects an unknown settings section (${v%%:*}, ${v#*:})"
	else
		t_fail "module rejects an unknown settings section (${v%%:*}, ${v#*:})" "$(first_line "$tmp/err")"
	fi
done

# The drift check: the service and the socket the module renders for `enable = true` == the
# packaged units (oneiric.service plus every oneiric.service.d/*.conf drop-in; oneiric.socket),
# on both systems.
unit_drift() {
	# unit_drift PACKAGING_DIR VARIANT SCENARIO UNIT -> 0 when the module's UNIT equals it
	case $4 in oneiric-admin.socket) attr=adminSocketUnit ;; *.socket) attr=socketUnit ;; *) attr=unit ;; esac
	module_eval "$2" "$3" "$attr" >"$tmp/unit" 2>"$tmp/err" || return 2
	bin=$(module_eval "$2" "$3" bin 2>>"$tmp/err") || return 2
	sdv=$(module_eval "$2" "$3" systemdVersion 2>>"$tmp/err") || return 2
	installed=$(module_eval "$2" "$3" installedUnits 2>>"$tmp/err") || return 2
	ONEIRIC_UNIT=$4 ONEIRIC_INSTALLED=$installed sh "$here/compare-unit.sh" "$1" "$tmp/unit" "$bin" "$sdv" >"$tmp/drift" 2>&1
}
drift_check() {
	# drift_check NAME PACKAGING_DIR VARIANT SCENARIO UNIT
	unit_drift "$2" "$3" "$4" "$5"
	case $? in
	0) t_pass "$1 ($(cat "$tmp/drift"))" ;;
	2) t_fail "$1" "$(first_line "$tmp/err")" ;;
	*) t_fail "$1" "$(head -n 6 "$tmp/drift" | tr '\n' ' ')" ;;
	esac
}
for v in $variants; do
	drift_check "no drift: NixOS service (${v%%:*}, ${v#*:}) == packaging/oneiric.service + oneiric.service.d" \
		"$tree/packaging" "$v" default oneiric.service
	drift_check "no drift: NixOS socket (${v%%:*}, ${v#*:}) == packaging/oneiric.socket" \
		"$tree/packaging" "$v" default oneiric.socket
	drift_check "no drift: NixOS admin socket (${v%%:*}, ${v#*:}) == packaging/oneiric-admin.socket" \
		"$tree/packaging" "$v" default oneiric-admin.socket
done

# The intended differences (nixos-module/README.md), each compared the same way with a copy of
# packaging/ changed by exactly that difference and nothing else.
http_listen=$(sed -n 's/^ListenStream=\([^/@].*\)$/\1/p' "$tree/packaging/oneiric.socket")
# ... as a regular expression (its dots and brackets escaped).
http_listen_re=$(printf '%s' "$http_listen" | sed 's/[].[]/\\&/g')
intended() {
	# intended DIR SED-SCRIPT FILE: DIR = a copy of packaging/ with FILE edited by SED-SCRIPT
	rm -rf "$1"
	cp -a "$tree/packaging" "$1"
	sed -i -E "$2" "$1/$3"
	! cmp -s "$tree/packaging/$3" "$1/$3"
}
if [ "$(printf '%s\n' "$http_listen" | grep -c .)" != 1 ]; then
	t_fail "intended differences of the socket" "packaging/oneiric.socket has not exactly one HTTP ListenStream=: '$http_listen'"
else
	if ! intended "$tmp/pkg-address" "s/^ListenStream=$http_listen_re\$/ListenStream=[::]:9393/" oneiric.socket ||
		! intended "$tmp/pkg-nohttp" "/^ListenStream=$http_listen_re\$/d" oneiric.socket; then
		t_fail "intended differences of the socket" "the copies of packaging/oneiric.socket did not change"
	fi
	for v in $variants; do
		drift_check "intended difference only: socket for metrics.address = \"::\", port 9393 (${v%%:*}, ${v#*:}) == packaging/oneiric.socket with ListenStream=$http_listen -> [::]:9393" \
			"$tmp/pkg-address" "$v" socket-address oneiric.socket
		drift_check "intended difference only: socket for metrics.enable = false (${v%%:*}, ${v#*:}) == packaging/oneiric.socket without ListenStream=$http_listen" \
			"$tmp/pkg-nohttp" "$v" http-disabled oneiric.socket
	done
fi
if intended "$tmp/pkg-nosocket" '/^(Wants|After)=oneiric(-admin)?\.socket$/d; /^Also=oneiric\.socket oneiric-admin\.socket$/d' oneiric.service; then
	for v in $variants; do
		drift_check "intended difference only: service for socketActivation = false (${v%%:*}, ${v#*:}) == packaging/oneiric.service + drop-ins without Wants=, After=, Also= of oneiric.socket and oneiric-admin.socket" \
			"$tmp/pkg-nosocket" "$v" no-socket oneiric.service
	done
else
	t_fail "intended difference: service for socketActivation = false" "packaging/oneiric.service has no Wants=, After= or Also=oneiric.socket line to leave out"
fi

# ... and they are derived from the files: edit the copies the module reads, it follows.
sed -i 's/^\(RestartSec\)=.*/\1=7s/' "$work/repo/packaging/oneiric.service"
printf '\n[Service]\nTasksMax=64\n' >>"$work/repo/packaging/oneiric.service"
# A new drop-in (as one for directives newer than the main unit's systemd would be): a value
# overridden, and a list reset then set again.
mkdir -p "$work/repo/packaging/oneiric.service.d"
printf '[Service]\nProtectHostname=private\nSystemCallFilter=\nSystemCallFilter=@system-service\n' \
	>"$work/repo/packaging/oneiric.service.d/zz-run-sh-test.conf"
# ... and `#systemd>=N` lines: one this systemd has (applied), one it has not (left out).
sed -i 's/^\(\[Service\]\)$/\1\n#systemd>=250 RestrictFileSystems=~@network\n#systemd>=9999 NoSuchDirective=yes/' \
	"$work/repo/packaging/oneiric.service"
# follows_edit UNIT WHAT DETAIL: the module's unit matches the edited packaging/UNIT (in
# $work/repo) and no longer matches the original one.
follows_edit() {
	name="module follows an edit of packaging/$1 and $2"
	if ! unit_drift "$work/repo/packaging" x86_64-linux:module default "$1"; then
		t_fail "$name" "$(head -n 4 "$tmp/drift" "$tmp/err" | tr '\n' ' ')"
	elif unit_drift "$tree/packaging" x86_64-linux:module default "$1"; then
		t_fail "$name" "the edited $1 still compared equal to the original"
	else
		t_pass "$name ($3)"
	fi
}
follows_edit oneiric.service "a new drop-in and #systemd>=N lines" \
	"RestartSec=7s, TasksMax=64, ProtectHostname=private, SystemCallFilter reset, #systemd>=250 applied, #systemd>=9999 not"
# The socket: a value changed, a directive added in a second [Socket] section, and a drop-in.
sed -i 's/^\(Backlog\)=.*/\1=128/' "$work/repo/packaging/oneiric.socket"
printf '\n[Socket]\nKeepAlive=yes\n' >>"$work/repo/packaging/oneiric.socket"
mkdir -p "$work/repo/packaging/oneiric.socket.d"
printf '[Socket]\nReusePort=yes\n' >"$work/repo/packaging/oneiric.socket.d/zz-run-sh-test.conf"
follows_edit oneiric.socket "a new drop-in" "Backlog=128, KeepAlive=yes, ReusePort=yes from oneiric.socket.d/"
# Packaging that disagrees with itself (the socket's port is not the unit's
# PROMETHEUS_METRICS_PORT) is reported, not followed: the module's socket takes the settings'.
sed -i "s/^ListenStream=$http_listen_re\$/ListenStream=${http_listen%:*}:9999/" "$work/repo/packaging/oneiric.socket"
if unit_drift "$work/repo/packaging" x86_64-linux:module default oneiric.socket; then
	t_fail "a packaged socket port other than PROMETHEUS_METRICS_PORT is reported" "ListenStream=${http_listen%:*}:9999 compared equal"
elif ! grep -q 'ListenStream' "$tmp/drift"; then
	t_fail "a packaged socket port other than PROMETHEUS_METRICS_PORT is reported" "$(head -n 4 "$tmp/drift" "$tmp/err" | tr '\n' ' ')"
else
	t_pass "a packaged socket port other than PROMETHEUS_METRICS_PORT is reported ($(grep -c ListenStream "$tmp/drift") ListenStream line(s) differ)"
fi

t_finish
