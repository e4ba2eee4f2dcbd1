# Shared by every shell test harness on the host (tests/run-all.sh, tests/packaging,
# tests/nix, tests/vm, tests/bench): one way to report a check, log, and close a run.
# Source it from bash or POSIX sh:   . "$(dirname "$0")/../lib.sh"
#
# Output contract (read by people and by CI):
#   PASS name
#   FAIL name: reason
#   SKIP name: reason          (only where no registry package can provide what is missing)
#   N passed, N failed[, N skipped]     the last line, from t_finish
# shellcheck shell=sh

T_PASSED=0
T_FAILED=0
T_SKIPPED=0
# A prefix for log lines on stderr, e.g. T_LOG_TAG=vm gives "[vm] ...".
T_LOG_TAG=${T_LOG_TAG:-test}

t_log() { echo "[$T_LOG_TAG] $*" >&2; }

t_pass() {
	echo "PASS $1"
	T_PASSED=$((T_PASSED + 1))
}

t_fail() {
	echo "FAIL $1: $2"
	T_FAILED=$((T_FAILED + 1))
}

t_skip() {
	echo "SKIP $1: $2"
	T_SKIPPED=$((T_SKIPPED + 1))
}

# t_check NAME CMD...: PASS if CMD succeeds, else FAIL with the last non-empty line it printed.
t_check() {
	t_name=$1
	shift
	if t_out=$("$@" 2>&1); then
		t_pass "$t_name"
	else
		t_fail "$t_name" "$(printf '%s\n' "$t_out" | grep -v '^$' | tail -n 1)"
	fi
}

# t_absorb FILE: relays a report written by a child process (a background job or a
# subshell, whose counters are its own) and counts its PASS/FAIL/SKIP lines here. The
# child's closing `N passed, N failed` line, if any, is not relayed.
t_absorb() {
	while IFS= read -r t_line || [ -n "$t_line" ]; do
		case "$t_line" in
		"PASS "*) T_PASSED=$((T_PASSED + 1)) ;;
		"FAIL "*) T_FAILED=$((T_FAILED + 1)) ;;
		"SKIP "*) T_SKIPPED=$((T_SKIPPED + 1)) ;;
		[0-9]*" passed, "[0-9]*" failed"*) continue ;;
		esac
		printf '%s\n' "$t_line"
	done <"$1"
}

# Prints the closing line and returns non-zero when any check failed.
t_summary() {
	if [ "$T_SKIPPED" -gt 0 ]; then
		echo "$T_PASSED passed, $T_FAILED failed, $T_SKIPPED skipped"
	else
		echo "$T_PASSED passed, $T_FAILED failed"
	fi
	[ "$T_FAILED" -eq 0 ]
}

# t_finish: t_summary, then exit with its status.
t_finish() {
	t_summary
	exit $?
}

# t_apt_install PKG...: installs Debian packages (root only), updating the lists once if the
# first try fails. Output goes to ${T_APT_LOG:-/dev/null}.
t_apt_install() {
	t_apt_log=${T_APT_LOG:-/dev/null}
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
		--no-install-recommends "$@" >>"$t_apt_log" 2>&1 && return 0
	apt-get -o DPkg::Lock::Timeout=600 update -q >>"$t_apt_log" 2>&1 &&
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
			--no-install-recommends "$@" >>"$t_apt_log" 2>&1
}
