# shellcheck shell=bash
# vm: needs=deb after=install boot=1 order=60 dists=all
# 5. Start limit: a service whose ExecStartPre probe fails ends `failed` after
#    StartLimitBurst starts, with the probe's reason in the journal.
systemctl reset-failed oneiric
burst=$(prop StartLimitBurst)
[ "$burst" -gt 0 ] || fail "StartLimitBurst not set"
R=$(usec_prop_seconds RestartUSec)
trap 'restore_config' EXIT
# An unknown settings key is an error: `health --probe` exits 3.
echo "vmtest_bogus_key: 1" >>/etc/oneiric/app.yml
rc=0; oneiric health --probe || rc=$?
expect_eq "health --probe exit code on a broken config" "$rc" 3
t0=$(date +%s)
systemctl restart oneiric && fail "systemctl restart with a broken config succeeded"
# When the limit is hit by an automatic restart, systemd (252 and 257 alike) keeps the
# last failure's Result (exit-code) and says "Start request repeated too quickly" in
# the journal.
failed_by_limit() {
  [ "$(prop ActiveState)" = failed ] && unit_journal_since "$t0" | grep "Start request repeated too quickly" >/dev/null
}
wait_for $(( burst * (R + 15) + SLACK + 30 )) "ActiveState=failed and 'Start request repeated too quickly'" failed_by_limit
note "failed by the start limit after $(( $(date +%s) - t0 ))s, Result=$(prop Result)"
j=$(unit_journal_since "$t0")
echo "$j"
grep -q "Start request repeated too quickly" <<<"$j" || fail "journal lacks 'Start request repeated too quickly'"
grep -q "vmtest_bogus_key" <<<"$j" || fail "journal lacks the probe's reason (naming vmtest_bogus_key)"
n=$(grep -c "Control process exited, code=exited, status=3" <<<"$j" || true)
expect_eq "failed ExecStartPre runs" "$n" "$burst"
systemctl status oneiric --no-pager -l -n 0 || true
# Stays failed: no further attempts.
sleep $((R + 2))
expect_eq "ActiveState some time after the limit" "$(prop ActiveState)" failed
trap - EXIT
restore_config
