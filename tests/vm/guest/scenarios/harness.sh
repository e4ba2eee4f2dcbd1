# shellcheck shell=bash
# vm: needs=none boot=1 order=80 dists=all qemu=1 default=0
# Harness self-test (needs no package): the guest booted a real systemd as PID 1 with
# AppArmor enabled, the payload arrived and results can leave.
expect_eq "PID 1" "$(cat /proc/1/comm)" systemd
[ "$(systemd-detect-virt)" != none ] || fail "not in a VM"
systemd-detect-virt --container >/dev/null && fail "in a container, expected a VM"
aa-enabled --quiet || fail "AppArmor not enabled in the guest kernel (cmdline: $(cat /proc/cmdline))"
grep -q apparmor /sys/kernel/security/lsm || fail "apparmor not an active LSM: $(cat /sys/kernel/security/lsm)"
[ -b /dev/disk/by-id/virtio-results ] || fail "no results disk"
systemctl --version | head -n1
. /etc/os-release
case "$DIST:$VERSION_CODENAME" in bookworm:bookworm|trixie:trixie) ;; *) fail "guest is $VERSION_CODENAME, expected $DIST";; esac
# No network beyond loopback.
if ip -o link | grep -v ' lo:'; then fail "guest has a network interface"; fi
