#!/usr/bin/env bash
# The one test command (README "Test", and .ci/run). Runs every stage, each reporting its own
# checks, then prints one line per stage and a plain `N passed, N failed` over the stages.
#
#   bash tests/run-all.sh                   all stages
#   ONEIRIC_TEST_STAGES="rust nix" bash tests/run-all.sh
#   ONEIRIC_TEST_STAGES=arm64 bash tests/run-all.sh      on demand, not in the default list:
#                                           the arm64 guest (~1 h here; the packaging stage builds arm64)
#
# As root on a fresh Debian 12 it installs what it needs with apt-get (each stage its own tools).
set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
STAGES=${ONEIRIC_TEST_STAGES:-"shell rust msrv bench fuzz packaging nix vm packaging-arm64"}
T_LOG_TAG=run-all
# shellcheck source=tests/lib.sh
. "$REPO/tests/lib.sh"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	# gcc links the binary (and builds mimalloc); libsqlite3-dev and pkg-config are how it
	# finds the system SQLite. The rest are the stages' own business.
	if ! command -v cc >/dev/null || ! command -v pkg-config >/dev/null ||
		! dpkg -s libsqlite3-dev >/dev/null 2>&1; then
		apt-get update -q && apt-get install -y -q build-essential libsqlite3-dev pkg-config
	fi
fi

# Prefetch: the guest images of the vm stage and the chroots of the msrv and packaging stages
# are debootstrap runs, mostly waiting on the mirror and the disk. Started here in the
# background (nice), they overlap the CPU-bound rust stage instead of running on the critical
# path; each stage then calls the same script, which waits for the build's lock and finds the
# cache. Their host tools are installed first, in the foreground: two apt-get runs at once
# would fail on dpkg's lock. A failed prefetch costs nothing: the stage builds it again and
# reports the failure itself. ONEIRIC_PREFETCH=0 turns it off.
PREFETCH=()
prefetch() { # prefetch NAME CMD...: run CMD in the background, its output in target/prefetch/NAME.log
	mkdir -p "$REPO/target/prefetch"
	setsid nice -n 10 "${@:2}" >"$REPO/target/prefetch/$1.log" 2>&1 </dev/null &
	PREFETCH+=($!)
}
if [ "${ONEIRIC_PREFETCH:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	case " $STAGES " in *" vm "* | *" msrv "* | *" packaging "*)
		tools=()
		pairs="debootstrap:debootstrap mkfs.ext4:e2fsprogs flock:util-linux"
		case " $STAGES " in *" vm "*) pairs="$pairs qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils" ;; esac
		for pair in $pairs; do
			PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 || tools+=("${pair#*:}")
		done
		[ ${#tools[@]} -eq 0 ] || T_APT_LOG=/dev/null t_apt_install "${tools[@]}" || true
		;;
	esac
	# The pinned cargo tools (packaging/tools.sh): ~11 min of compiling from empty caches,
	# most of it in the CPU the shell, rust, bench and fuzz stages leave idle.
	case " $STAGES " in *" fuzz "* | *" packaging "* | *" vm "*) prefetch tools sh packaging/tools.sh all ;; esac
	case " $STAGES " in *" vm "*) ONEIRIC_VM_RUNROOT=/var/tmp/oneiric-vm-prefetch prefetch vm-images bash tests/vm/run.sh --images ;; esac
	case " $STAGES " in *" msrv "*) prefetch chroot-msrv sh packaging/chroot.sh path msrv ;; esac
	case " $STAGES " in *" packaging "*) prefetch chroot-arm64 sh packaging/chroot.sh path arm64 ;; esac
	# The reference Python implementation for the bench stage's side-by-side row (~1 min).
	case " $STAGES " in *" bench "*) prefetch chroot-pyref sh packaging/chroot.sh path pyref ;; esac
fi
# shellcheck disable=SC2317 # run from the EXIT trap
stop_prefetch() {
	local p
	for p in ${PREFETCH[@]+"${PREFETCH[@]}"}; do kill -TERM -- "-$p" 2>/dev/null || true; done
}
trap stop_prefetch EXIT

# Every shell script of the repository, one path a line: *.sh, files with an sh/bash
# shebang, the .deb maintainer scripts and the .rpm scriptlets (plain sh, no shebang: each
# says `# shellcheck shell=sh`), and the VM scenarios (bash files sourced by the guest suite,
# each with a `# shellcheck shell=bash` line).
# shellcheck disable=SC2317 # used by stage_shell
shell_scripts() {
	local f
	{ git ls-files --cached --others --exclude-standard 2>/dev/null || find . -path ./target -prune -o -path ./.git -prune -o -type f -print | sed 's|^\./||'; } |
		sort -u | while IFS= read -r f; do
		[ -f "$f" ] || continue
		case "$f" in
		target/*) continue ;;
		*.sh | debian/preinst | debian/postinst | debian/prerm | debian/postrm | rpm/*) echo "$f" ;;
		*) head -n 1 "$f" 2>/dev/null | grep -Eq '^#!.*[/ ](ba|da)?sh([[:space:]]|$)' && echo "$f" ;;
		esac
	done
}
# Runs Debian's shellcheck over every shell script, one check per file; the findings
# of a failing file follow its FAIL line. Targeted `# shellcheck disable=` lines carry
# their reason in the file.
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_shell() (
	T_LOG_TAG=shell
	if ! command -v shellcheck >/dev/null; then
		[ "$(id -u)" = 0 ] && t_apt_install shellcheck
		command -v shellcheck >/dev/null || { t_fail shellcheck "not installed and apt-get install shellcheck failed"; t_finish; }
	fi
	t_log "$(shellcheck --version | sed -n 's/^version: /shellcheck /p')"
	local f out n=0
	while IFS= read -r f; do
		n=$((n + 1))
		# -x: follow `source=` directives; -S style: every finding, notes included.
		if out=$(shellcheck -x -S style -f gcc "$f" 2>&1); then
			t_pass "shellcheck $f"
		else
			t_fail "shellcheck $f" "$(printf '%s\n' "$out" | grep -c ': \(error\|warning\|note\|style\):') finding(s)"
			printf '%s\n' "$out" | sed 's/^/    /'
		fi
	done < <(shell_scripts)
	[ "$n" -gt 0 ] || t_fail shellcheck "no shell scripts found"
	t_summary
)
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_rust() {
	# The cross-implementation vectors are optional (beside the checkout, not in it): say
	# plainly whether tests/conformance.rs checked them or passed without checking anything.
	if [ -d ../shared/testdata ]; then
		t_log "conformance: tests/conformance.rs runs against ../shared/testdata"
	else
		t_log "conformance: SKIPPED, ../shared/testdata is absent (tests/conformance.rs checks nothing; tests/fixtures cover the same paths)"
	fi
	cargo fmt --check &&
		cargo clippy --all-targets --locked -- -D warnings &&
		cargo test --locked
}
# The declared rust-version, built with Debian's rustc of that version in a cached chroot.
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_msrv() { sh tests/msrv/run.sh; }
# Benchmarks in smoke mode (tiny sizes, no time judgement) so they cannot rot; the figures
# themselves come from `bash tests/bench/run.sh` (BENCHMARKS.md). Then the fleet test at
# N = 50 (tests/fleet/run.sh --smoke), whose assertions are issue 19's Done-when.
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_bench() {
	local rc=0
	bash tests/bench/run.sh --smoke || rc=1
	bash tests/fleet/run.sh --smoke || rc=1
	return "$rc"
}
# The cargo-fuzz targets of fuzz/, each run a few seconds over its committed corpus
# (tests/fuzz/README.md has the long runs).
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_fuzz() { bash tests/fuzz/run.sh; }
# The arm64 binary is a second full release build (fat LTO, ~13 min of 2 cores from empty
# caches). With packaging-arm64 in the plan, the packaging stage starts it in the
# background at nice 19, where it takes only the CPU the later stages leave idle (the
# single-threaded LTO tails of the x86_64 builds, and the vm stage, whose one-vCPU guests
# leave a core idle once fewer guests than cores remain); packaging-arm64 then waits for it,
# packages it and checks it. Its target directory and the chroot are its own, so nothing of
# the x86_64 builds is shared with it. Alone, packaging runs the arm64 half itself.
ARM64_BUILD_PID=""
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_packaging() {
	case " $STAGES " in *" packaging-arm64 "*)
		mkdir -p "$REPO/target/prefetch"
		setsid nice -n 19 sh packaging/build-binary.sh arm64 >"$REPO/target/prefetch/arm64-binary.log" 2>&1 </dev/null &
		ARM64_BUILD_PID=$!
		PREFETCH+=("$ARM64_BUILD_PID")
		ONEIRIC_PKG_ARM64=later bash tests/packaging/run.sh
		return
		;;
	esac
	bash tests/packaging/run.sh
}
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_packaging-arm64() {
	local rc=0 deb rpm deb64 rpm64 sbom w=$REPO/target/packaging-arm64-stage t0=$SECONDS
	mkdir -p "$w"
	if [ -n "$ARM64_BUILD_PID" ]; then
		# A failed background build is not fatal here: build-deb.sh below builds it again
		# in the foreground and its failure, if any, is the one reported.
		wait "$ARM64_BUILD_PID" || echo "the background arm64 build failed (target/prefetch/arm64-binary.log); building again"
		echo "waited $((SECONDS - t0)) s for the background arm64 build"
	fi
	# Cached binaries: these rebuild nothing but the packages when the builds are current.
	if ! { deb=$(packaging/build-deb.sh amd64 2>"$w/deb.log" | tail -n 1) &&
		rpm=$(packaging/build-rpm.sh x86_64 2>"$w/rpm.log" | tail -n 1) &&
		deb64=$(packaging/build-deb.sh arm64 2>"$w/deb64.log" | tail -n 1) &&
		rpm64=$(packaging/build-rpm.sh aarch64 2>"$w/rpm64.log" | tail -n 1) &&
		[ -f "$deb" ] && [ -f "$rpm" ] && [ -f "$deb64" ] && [ -f "$rpm64" ]; }; then
		tail -q -n 5 "$w"/*.log
		echo "FAIL build-packages: building the packages failed (logs in $w)"
		return 1
	fi
	echo "packages built $((SECONDS - t0)) s into the stage"
	bash tests/packaging/arm64.sh "$deb" "$rpm" "$deb64" "$rpm64" || rc=1
	sbom=$(packaging/sbom.sh "$w/sbom" 2>"$w/sbom.log" | tail -n 1) || sbom=""
	ONEIRIC_SBOM=$sbom bash tests/packaging/repos.sh check "$w/repos" "$deb" "$rpm" "$deb64" "$rpm64" || rc=1
	return "$rc"
}
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_nix() { sh tests/nix/run.sh; }
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_vm() { bash tests/vm/run.sh; }
# On demand (ONEIRIC_TEST_STAGES=arm64): the Debian 13 arm64 guest (qemu-system-aarch64, TCG)
# with the arm64 .deb (the packaging stage builds and checks the arm64 packages). Not in the
# default list: the guest image's second debootstrap stage under qemu-user (~19 min, cached)
# and the scenarios under aarch64 emulation do not fit CI's 60 minutes beside the other stages.
# shellcheck disable=SC2317 # run as "stage_$s" below
stage_arm64() { bash tests/vm/run.sh --dist trixie-arm64; }

results=()
for s in $STAGES; do
	if ! declare -F "stage_$s" >/dev/null; then
		results+=("FAIL|stage $s|no such stage (known: shell rust msrv bench fuzz packaging nix vm packaging-arm64 arm64)")
		continue
	fi
	echo "=== stage $s ==="
	start=$(date +%s)
	if "stage_$s"; then r=PASS; else r=FAIL; fi
	results+=("$r|stage $s ($(($(date +%s) - start)) s)|stage failed")
done
echo "=== summary ==="
for r in "${results[@]}"; do
	IFS='|' read -r st name why <<<"$r"
	if [ "$st" = PASS ]; then t_pass "$name"; else t_fail "$name" "$why"; fi
done
t_finish
