#!/bin/bash
# Runs in the guest at every boot (vmtest.service -> vmtest-hook), from the payload
# disk unpacked at /vmtest. Runs the scenarios of /vmtest/config's PLAN in order, one
# result file each under /var/lib/vmtest/results, then saves everything to the results
# disk and powers off. REBOOT_AT (run.sh: the first scenario whose header says reboot=1)
# splits the run: the guest reboots before that scenario and the second boot continues
# with it (state in /var/lib/vmtest survives the reboot).
set -u
# shellcheck source=/dev/null # written by run.sh: DIST, PLAN, REBOOT_AT, SCENARIO_TIMEOUT
. /vmtest/config
# shellcheck source=tests/vm/guest/lib.sh
. /vmtest/guest/lib.sh

mkdir -p "$RESULTS"
rm -f "$RESULTS/rebooting"
BOOT=$(cat /proc/sys/kernel/random/boot_id)
echo "$BOOT" >>"$STATE/boots"
NEXT=$(cat "$STATE/next" 2>/dev/null || echo 0)
echo "vmtest: $DIST boot $(wc -l <"$STATE/boots"), plan: $PLAN (from #$NEXT)" >/dev/console

trap 'exit 0' TERM   # a reboot we asked for stops us; that is not a failure

i=0
for name in $PLAN; do
  if [ $i -lt "$NEXT" ]; then i=$((i + 1)); continue; fi
  if [ "$i" = "${REBOOT_AT:--1}" ] && [ ! -e "$STATE/rebooted" ]; then
    # Phase 1 ends: remember where to go on, then reboot for real.
    echo "$BOOT" >"$STATE/boot-before-reboot"
    echo "$i" >"$STATE/next"
    touch "$STATE/rebooted" "$RESULTS/rebooting"
    # The host boots QEMU with -no-reboot and boots the same disk again when the results
    # say so; inside the guest this is a plain `systemctl reboot`.
    /bin/bash /vmtest/guest/collect.sh
    echo "vmtest: rebooting for the reboot scenario" >/dev/console
    systemctl --no-block reboot
    exit 0
  fi
  n=$(printf '%02d' "$i")
  log="$RESULTS/$n-$name.log"
  export REASON_FILE="$RESULTS/$n-$name.reason"
  rm -f "$REASON_FILE"
  start=$(date +%s)
  echo "vmtest: uname -m = $(uname -m)" >>"$log"
  echo "vmtest: >>> $name" >/dev/console
  # shellcheck disable=SC2016 # the script is for the inner bash: its $ expand there
  timeout -k 10 "${SCENARIO_TIMEOUT:-480}" /bin/bash -c '
    set -euo pipefail
    exec 2>>"$1" 1>&2
    BASH_XTRACEFD=2
    . /vmtest/config
    . /vmtest/guest/lib.sh
    set -E
    trap '\''rc=$?; [ -s "$REASON_FILE" ] || echo "command failed (exit $rc): $BASH_COMMAND (${BASH_SOURCE[0]##*/} line $LINENO)" >"$REASON_FILE"'\'' ERR
    set -x
    . "/vmtest/guest/scenarios/$2.sh"
  ' scenario "$log" "$name"
  rc=$?
  end=$(date +%s)
  if [ $rc -eq 0 ]; then
    status="PASS"
  else
    reason=$(head -c 600 "$REASON_FILE" 2>/dev/null | tr '\n' ' ')
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && reason="timed out after ${SCENARIO_TIMEOUT:-480}s${reason:+ ($reason)}"
    status="FAIL: ${reason:-exit $rc}"
    # Context for the host to print: the unit's journal and everything at warning or
    # worse during the scenario.
    {
      echo "--- journalctl -u oneiric (scenario window)"
      journalctl --no-pager -o short-precise -u oneiric --since "@$start" | tail -n 60
      echo "--- journal, all units (scenario window, last 50 lines)"
      journalctl --no-pager -o short-precise --since "@$start" | tail -n 50
    } >"$RESULTS/$n-$name.journal" 2>&1
  fi
  echo "$status ($((end - start)) s)" >"$RESULTS/$n-$name.status"
  # A failed scenario may leave the service broken: give the next one a working service.
  if [ $rc -ne 0 ] && dpkg-query -W -f '${Status}' oneiric 2>/dev/null | grep "ok installed" >/dev/null; then
    echo "--- recovery after $name" >>"$log"
    timeout 180 /bin/bash -c '. /vmtest/guest/lib.sh; REASON_FILE=/dev/null; restore_config' >>"$log" 2>&1 || true
  fi
  echo "vmtest: <<< $name: $status ($((end - start)) s)" >/dev/console
  i=$((i + 1))
  echo "$i" >"$STATE/next"
  # Results so far onto the results disk, so a later hang still reports these.
  /bin/bash /vmtest/guest/collect.sh --quick
done

echo "done" >"$STATE/finished"
/bin/bash /vmtest/guest/collect.sh
echo "vmtest: all done, powering off" >/dev/console
systemctl --no-block poweroff
exit 0
