#!/bin/sh
# tests/nix/run.sh - the Nix checks that can run without nixpkgs (part of CI).
#
#   sh tests/nix/run.sh            # as root, on Debian 12 or newer
#   NIXPKGS_LIB=/path/to/nixpkgs.lib sh tests/nix/run.sh
#
# 1. Every .nix file in the repository parses (`nix-instantiate --parse`; Debian's nix-bin,
#    installed with apt-get when missing).
# 2. tests/nix/compare-unit.sh (the drift comparator) accepts the packaged unit and reports a
#    changed directive.
# 3. With a checkout of nixpkgs' lib (NIXPKGS_LIB=/path, or /var/tmp/nixpkgs-lib; e.g. the
#    nix-community/nixpkgs.lib repository): the flake's outputs and VM test files evaluate
#    (tests/nix/eval-flake.nix), the module evaluates with stub NixOS options in several
#    configurations (tests/nix/eval-module.nix), and the service it renders is compared with
#    packaging/oneiric.service + oneiric.service.d/ (no drift), and follows an edit of it.
#    nixpkgs' lib needs Nix >= 2.18: when the host's Nix is older (Debian 12 has 2.8), this
#    runs in a Debian 13 chroot with its nix-bin, built with debootstrap on first use and kept
#    in $ONEIRIC_NIX_CHROOT (default /var/tmp/oneiric-nix-chroot). Without a lib checkout
#    these checks are reported as SKIP, with the reason.
#
# Not here (they need nixpkgs and its binary cache): building the package, `nix flake check`,
# the VM tests. See nixos-module/README.md.
#
# Output: one line per check (PASS name / FAIL name: reason / SKIP name: reason), then
# "N passed, N failed, N skipped". Exit status 1 when anything failed.
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
pass=0
fail=0
skip=0

# shellcheck disable=SC2317 # called by the trap
cleanup() {
	if [ -n "$proc_mounted" ]; then umount "$chroot_dir/proc" 2>/dev/null || true; fi
	rm -rf "$chroot_dir/work/oneiric-nix-check"
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() {
	echo "PASS $1"
	pass=$((pass + 1))
}
ko() {
	echo "FAIL $1: $2"
	fail=$((fail + 1))
}
sk() {
	echo "SKIP $1: $2"
	skip=$((skip + 1))
}
finish() {
	echo "$pass passed, $fail failed, $skip skipped"
	[ "$fail" -eq 0 ] || exit 1
	exit 0
}
# The line of an error output that says what is wrong, for a FAIL reason (Nix puts its
# message on the last "error: ..." line, after the trace).
first_line() {
	l=$(grep -E 'error: *[^ ]' "$1" | tail -n1 | sed 's/^[[:space:]]*//')
	[ -n "$l" ] || l=$(grep -v '^[[:space:]]*$' "$1" | head -n1)
	printf '%s\n' "$l"
}
tail_log() { tail -n 5 "$log" | tr '\n' ' '; }

apt_install() {
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >>"$log" 2>&1 && return 0
	apt-get -o DPkg::Lock::Timeout=600 update -q >>"$log" 2>&1 &&
		apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >>"$log" 2>&1
}

# ---- 1. parse every .nix file ---------------------------------------------------------------
if ! command -v nix-instantiate >/dev/null 2>&1; then
	if ! apt_install nix-bin || ! command -v nix-instantiate >/dev/null 2>&1; then
		ko "install nix-bin" "apt-get install nix-bin failed: $(tail_log)"
		finish
	fi
fi
host_nix=$(nix-instantiate --version 2>/dev/null | awk '{print $NF}')

find "$repo" -name '*.nix' -not -path '*/target/*' -not -path '*/.git/*' -not -path '*/node_modules/*' |
	LC_ALL=C sort >"$tmp/nixfiles"
if [ ! -s "$tmp/nixfiles" ]; then
	ko "parse .nix files" "no .nix file found under $repo"
fi
while read -r f; do
	name=${f#"$repo"/}
	if nix-instantiate --parse "$f" >/dev/null 2>"$tmp/err"; then
		ok "parse $name (nix $host_nix)"
	else
		ko "parse $name" "$(first_line "$tmp/err")"
	fi
done <"$tmp/nixfiles"

for s in "$here/run.sh" "$here/compare-unit.sh"; do
	if sh -n "$s" 2>"$tmp/err"; then ok "sh -n ${s#"$repo"/}"; else ko "sh -n ${s#"$repo"/}" "$(first_line "$tmp/err")"; fi
done

# ---- 2. the drift comparator itself -------------------------------------------------------
{
	cat "$repo/packaging/oneiric.service"
	# In C-locale order, as compare-unit.sh applies them.
	for d in "$repo"/packaging/oneiric.service.d/*.conf; do
		[ -f "$d" ] && { echo; cat "$d"; }
	done
} >"$tmp/same.service"
sed 's/^\(Restart\)=.*/\1=always/' "$tmp/same.service" >"$tmp/changed.service"
if ! sh "$here/compare-unit.sh" "$repo/packaging" "$tmp/same.service" /usr/bin/oneiric >"$tmp/out" 2>&1; then
	ko "compare-unit.sh accepts the packaged unit itself" "$(head -n3 "$tmp/out" | tr '\n' ' ')"
elif sh "$here/compare-unit.sh" "$repo/packaging" "$tmp/changed.service" /usr/bin/oneiric >"$tmp/out" 2>&1; then
	ko "compare-unit.sh reports a changed directive" "Restart=always was not reported"
elif ! grep -q 'Restart' "$tmp/out"; then
	ko "compare-unit.sh reports a changed directive" "$(head -n3 "$tmp/out" | tr '\n' ' ')"
else
	ok "compare-unit.sh accepts the packaged unit and reports a changed directive"
fi

# ---- 3. evaluation with nixpkgs' lib ------------------------------------------------------
lib_src=${NIXPKGS_LIB:-}
if [ -z "$lib_src" ] && [ -d /var/tmp/nixpkgs-lib ]; then lib_src=/var/tmp/nixpkgs-lib; fi
evaluation="module evaluation, unit drift and flake outputs"
if [ -z "$lib_src" ]; then
	sk "$evaluation" "no checkout of nixpkgs' lib (set NIXPKGS_LIB=/path, e.g. a checkout of nix-community/nixpkgs.lib, or put one at /var/tmp/nixpkgs-lib); only parsing ran"
	finish
fi
if [ -f "$lib_src/lib/default.nix" ]; then
	lib_dir=$lib_src/lib
elif [ -f "$lib_src/default.nix" ] && [ -f "$lib_src/trivial.nix" ]; then
	lib_dir=$lib_src
else
	ko "$evaluation" "NIXPKGS_LIB=$lib_src holds no nixpkgs lib (no lib/default.nix)"
	finish
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
		echo "building a Debian 13 chroot with Nix >= 2.18 in $chroot_dir (about 3 minutes, once)" >&2
		mirror=$(awk '
			/^[[:space:]]*$/ { if (u != "" && s !~ /security/) { print u; exit } u = ""; s = ""; next }
			/^URIs:/ { u = $2 } /^Suites:/ { s = $0 }
			END { if (u != "" && s !~ /security/) print u }' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
		if [ -z "$mirror" ]; then
			mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
				/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
		fi
		if [ -z "$mirror" ]; then
			ko "$evaluation" "no Debian mirror found in /etc/apt/sources.list{,.d} for debootstrap"
			finish
		fi
		if ! command -v debootstrap >/dev/null 2>&1 && ! apt_install debootstrap; then
			ko "$evaluation" "apt-get install debootstrap failed: $(tail_log)"
			finish
		fi
		rm -rf "$chroot_dir.tmp"
		if ! debootstrap --variant=minbase trixie "$chroot_dir.tmp" "$mirror" >>"$log" 2>&1; then
			ko "$evaluation" "debootstrap trixie from $mirror failed: $(tail_log)"
			finish
		fi
		# nix-bin with apt inside the chroot (debootstrap --include trips on a virtual dependency).
		if ! chroot "$chroot_dir.tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nix-bin >>"$log" 2>&1; then
			ko "$evaluation" "apt-get install nix-bin in the trixie chroot failed: $(tail_log)"
			finish
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
mkdir -p "$work/repo/tests"
cp -a "$repo/flake.nix" "$repo/nixos-module" "$repo/packaging" "$work/repo/"
cp -a "$repo/tests/nix" "$work/repo/tests/"
if [ -d "$repo/apparmor" ]; then cp -a "$repo/apparmor" "$work/repo/"; fi
cp -a "$lib_dir" "$work/lib"
w=${work_in:-$work}

eval_nix() {
	# eval_nix FILE ATTR [ARGS...] -> stdout: the raw string
	file=$1 attr=$2
	shift 2
	run_nix eval --raw --option substituters '' --file "$w/repo/tests/nix/$file" --arg lib "import $w/lib" "$@" "$attr"
}
nix_version=$(run_nix --version 2>/dev/null | awk '{print $NF}')

# Relays a report (PASS/FAIL lines) with a prefix, counting.
relay() {
	while IFS= read -r line; do
		case $line in
		"PASS "*) ok "$1${line#PASS }" ;;
		"FAIL "*) r=${line#FAIL }; ko "$1${r%%: *}" "${r#*: }" ;;
		esac
	done
}

if eval_nix eval-flake.nix report >"$tmp/report" 2>"$tmp/err"; then
	relay "flake (nix $nix_version): " <"$tmp/report"
else
	ko "flake outputs evaluate (nix $nix_version)" "$(first_line "$tmp/err")"
fi

# The VM tests' Python scripts compile (they run in the NixOS test driver, not here).
if ! command -v python3 >/dev/null 2>&1; then
	sk "VM test scripts compile" "no python3 on this machine"
elif eval_nix eval-flake.nix testScripts >"$tmp/tests" 2>"$tmp/err"; then
	while IFS= read -r t; do
		[ -n "$t" ] || continue
		if ! eval_nix eval-flake.nix testScript --apply "f: f \"$t\"" >"$tmp/$t.py" 2>"$tmp/err"; then
			ko "VM test $t: testScript evaluates" "$(first_line "$tmp/err")"
		elif ! grep -q 'subtest' "$tmp/$t.py"; then
			ko "VM test $t: testScript evaluates" "empty or without subtests"
		elif python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' "$tmp/$t.py" 2>"$tmp/err"; then
			ok "VM test $t: testScript evaluates and compiles (python3)"
		else
			ko "VM test $t: testScript compiles" "$(tail -n1 "$tmp/err")"
		fi
	done <"$tmp/tests"
else
	ko "list the VM tests" "$(first_line "$tmp/err")"
fi

for s in default custom settings-direct attrs-manifest runtime-manifest no-manifest http-refused; do
	if eval_nix eval-module.nix report --argstr scenario "$s" >"$tmp/report" 2>"$tmp/err"; then
		relay "module[$s]: " <"$tmp/report"
	else
		ko "module[$s] evaluates" "$(first_line "$tmp/err")"
	fi
done

# Each node of each VM test, evaluated against the module with the same stubs.
if eval_nix eval-module.nix vmScenarios >"$tmp/vms" 2>"$tmp/err"; then
	while IFS= read -r s; do
		[ -n "$s" ] || continue
		if eval_nix eval-module.nix report --argstr scenario "$s" >"$tmp/report" 2>"$tmp/err"; then
			relay "module[$s]: " <"$tmp/report"
		else
			ko "module[$s] evaluates" "$(first_line "$tmp/err")"
		fi
	done <"$tmp/vms"
else
	ko "list the VM tests' nodes" "$(first_line "$tmp/err")"
fi

if eval_nix eval-module.nix report --argstr scenario bad-section >/dev/null 2>"$tmp/err"; then
	ko "module rejects an unknown settings section" "settings.nonsense evaluated without error"
elif grep -q "nonsense" "$tmp/err"; then
	ok "module rejects an unknown settings section"
else
	ko "module rejects an unknown settings section" "$(first_line "$tmp/err")"
fi

# The drift check: the service the module renders for `enable = true` == the packaged unit.
unit_drift() {
	# unit_drift PACKAGING_DIR -> 0 when the module's unit equals it
	eval_nix eval-module.nix unit --argstr scenario default >"$tmp/unit" 2>"$tmp/err" || return 2
	bin=$(eval_nix eval-module.nix bin --argstr scenario default 2>>"$tmp/err") || return 2
	sh "$here/compare-unit.sh" "$1" "$tmp/unit" "$bin" >"$tmp/drift" 2>&1
}
unit_drift "$repo/packaging"
case $? in
0) ok "no drift: NixOS service == packaging/oneiric.service + oneiric.service.d ($(cat "$tmp/drift"))" ;;
2) ko "no drift: NixOS service == packaging/oneiric.service" "$(first_line "$tmp/err")" ;;
*) ko "no drift: NixOS service == packaging/oneiric.service" "$(head -n 6 "$tmp/drift" | tr '\n' ' ')" ;;
esac

# ... and it is derived from the file: edit the copy the module reads, it follows.
sed -i 's/^\(RestartSec\)=.*/\1=7s/' "$work/repo/packaging/oneiric.service"
printf '\n[Service]\nTasksMax=64\n' >>"$work/repo/packaging/oneiric.service"
if ! unit_drift "$work/repo/packaging"; then
	ko "module follows an edit of packaging/oneiric.service" "$(head -n 4 "$tmp/drift" "$tmp/err" | tr '\n' ' ')"
elif unit_drift "$repo/packaging"; then
	ko "module follows an edit of packaging/oneiric.service" "the edited unit still compared equal to the original"
else
	ok "module follows an edit of packaging/oneiric.service (RestartSec=7s, TasksMax=64 appear)"
fi

finish
