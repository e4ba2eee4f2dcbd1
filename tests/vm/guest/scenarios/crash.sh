# shellcheck shell=bash
# vm: needs=deb after=install boot=1 order=50 dists=all
# 4b. Crash (SIGKILL): restarted, with the lifecycle state (pause, drain) intact, and a
#     client loop across it sees no refused connection and no failed request (issue 18).
systemctl reset-failed oneiric
wait_healthy 60
trap 'oneiric pause adapter cache --resume || true; oneiric drain service status --clear || true' EXIT
oneiric pause adapter cache || fail "oneiric pause adapter cache exited $?"
oneiric drain service status || fail "oneiric drain service status exited $?"
entry_flag() { # entry_flag KEY FLAG -> true if status shows FLAG true for KEY
  oneiric status --json | tr -d ' \n' | grep "\"key\":\"$1\"[^}]*\"$2\":true" >/dev/null
}
entry_flag cache paused || fail "adapter/cache not paused before the crash"
entry_flag status draining || fail "service/status not draining before the crash"
R=$(usec_prop_seconds RestartUSec)
n0=$(prop NRestarts)
pid=$(main_pid)
load_start crash
t0=$(date +%s)
kill -KILL "$pid"
new_pid_up() { p=$(main_pid); [ "$p" != 0 ] && [ "$p" != "$pid" ] && service_healthy; }
wait_for $((R + SLACK + 30)) "a new main process after SIGKILL of $pid" new_pid_up
note "killed -> restarted in $(( $(date +%s) - t0 ))s (RestartSec=${R}s)"
sleep 2
# Clients wait in oneiric.socket's backlog for RestartSec and the start: none is refused.
load_stop crash "kill -9 (RestartSec=${R}s)" killed
j=$(unit_journal_since "$t0")
echo "$j"
grep -q "status=9/KILL" <<<"$j" || fail "journal does not show the SIGKILL"
expect_eq "NRestarts" "$(prop NRestarts)" $((n0 + 1))
entry_flag cache paused || fail "pause of adapter/cache lost across the crash"
entry_flag status draining || fail "drain of service/status lost across the crash"
oneiric activity
trap - EXIT
oneiric pause adapter cache --resume
oneiric drain service status --clear
if entry_flag cache paused; then fail "resume did not take"; fi
