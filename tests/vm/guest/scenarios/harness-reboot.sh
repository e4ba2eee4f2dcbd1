# shellcheck shell=bash
# vm: needs=none boot=2 reboot=1 order=80 dists=all qemu=1 default=0
# Harness self-test: the guest rebooted (a second QEMU boot of the same disk) and the
# suite went on after the reboot point.
before=$(cat "$STATE/boot-before-reboot")
now=$(cat /proc/sys/kernel/random/boot_id)
[ "$before" != "$now" ] || fail "same boot id after the reboot"
expect_eq "boots seen" "$(wc -l <"$STATE/boots")" 2
# The persistent journal holds both boots.
[ "$(journalctl --list-boots --no-pager | wc -l)" -ge 2 ] || fail "journal does not list 2 boots"
