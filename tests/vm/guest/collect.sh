#!/bin/bash
# Saves the results, the whole journal (all boots) and the kernel log onto the results
# disk (serial "results") as a plain tar; the host reads it with `tar -xf results.img`.
# Called at the end of the suite and, whatever happened, by vmtest.service's ExecStopPost.
set -u
# As ExecStopPost after a clean exit (the suite saved already, or asked for a reboot):
# nothing to do. After a failure or timeout of the hook: save what there is.
if [ "${SERVICE_RESULT:-}" = success ]; then exit 0; fi
STATE=/var/lib/vmtest
OUT=$STATE/results
DISK=/dev/disk/by-id/virtio-results
mkdir -p "$OUT"
if [ "${1:-}" = --quick ]; then
  [ -b "$DISK" ] && tar -C "$STATE" -cf "$DISK" results && sync
  exit 0
fi
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0
journalctl --no-pager -o short-precise >"$OUT/journal.txt" 2>&1
journalctl --no-pager -o short-precise _TRANSPORT=kernel >"$OUT/kernel.txt" 2>&1
dmesg >"$OUT/dmesg.txt" 2>&1 || true
cp /vmtest/config "$OUT/config" 2>/dev/null || true
cp "$STATE/boots" "$OUT/boots" 2>/dev/null || true
[ -e "$STATE/finished" ] && cp "$STATE/finished" "$OUT/finished"
sync
if [ -b "$DISK" ]; then
  tar -C "$STATE" -cf "$DISK" results && sync
else
  echo "vmtest: no results disk" >&2
fi
