# shellcheck shell=bash
# vm: needs=deb after=install boot=1 order=40 dists=all
# 4a. Watchdog: freeze the main process; systemd kills it and restarts the service
#     within WatchdogSec + RestartSec, and the journal says why; a client loop across it
#     sees no refused connection and no failed request (issue 18).
systemctl reset-failed oneiric      # start-limit counter from earlier scenarios
wait_healthy 60
W=$(usec_prop_seconds WatchdogUSec)
R=$(usec_prop_seconds RestartUSec)
[ "$W" -gt 0 ] || fail "WatchdogSec= is not set on the unit"
n0=$(prop NRestarts)
pid=$(main_pid)
load_start watchdog
t0=$(date +%s)
kill -STOP "$pid"
new_pid_up() { p=$(main_pid); [ "$p" != 0 ] && [ "$p" != "$pid" ] && service_healthy; }
wait_for $((W + R + SLACK + 30)) "a new main process after freezing $pid" new_pid_up
dt=$(( $(date +%s) - t0 ))
sleep 2
# The request in flight waits out the freeze (WatchdogSec) and the restart; none fails.
load_stop watchdog "watchdog kill of a frozen process (WatchdogSec=${W}s RestartSec=${R}s)" killed
note "frozen -> restarted and healthy in ${dt}s (WatchdogSec=${W}s RestartSec=${R}s, slack ${SLACK}s for emulation)"
[ "$dt" -le $((W + R + SLACK)) ] || fail "restart took ${dt}s > WatchdogSec ${W} + RestartSec ${R} (+${SLACK}s slack)"
j=$(unit_journal_since "$t0")
echo "$j"
grep -q "Watchdog timeout" <<<"$j" || fail "journal does not say 'Watchdog timeout'"
grep -q "Failed with result 'watchdog'" <<<"$j" || fail "journal does not say \"Failed with result 'watchdog'\""
expect_eq "NRestarts" "$(prop NRestarts)" $((n0 + 1))
if [ -d "/proc/$pid" ]; then fail "frozen process $pid still exists"; fi
