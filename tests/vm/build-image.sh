#!/bin/bash
# Build (or reuse) a bootable Debian guest image for the VM tests.
#
#   tests/vm/build-image.sh bullseye|bookworm|trixie|trixie-arm64
#
# trixie-arm64: Debian 13 for arm64 (booted with qemu-system-aarch64 -M virt): debootstrap
# --foreign, then its second stage in a chroot under qemu-user (qemu-user-static through
# binfmt_misc, registered here when missing) -- the slow part (dpkg and the initramfs
# under emulation, ~19 min on 2 cores), which is why the image is cached.
#
# Prints the cache directory on stdout (last line). It holds:
#   root.img   raw ext4 root filesystem (never written by a test: the runner boots an overlay)
#   vmlinuz    the guest kernel
#   initrd.img its initramfs
#   packages   dpkg -l of the guest, for reference
#
# The cache key is the sha256 of this script, so any change here rebuilds the image; a
# second run with an unchanged script reuses it. Everything the image needs is in this one
# file (the in-guest boot hook is a heredoc below); the scenarios themselves are NOT baked
# in: run.sh hands them to the guest on a disk at every boot.
#
# Environment:
#   ONEIRIC_VM_CACHE   cache root (default /var/tmp/oneiric-vm-cache)
#   ONEIRIC_VM_MIRROR  Debian mirror URL (default: read from the host's apt sources)
set -euo pipefail

DIST=${1:-}
case "$DIST" in
  bullseye|bookworm|trixie|trixie-arm64) ;;
  *) echo "usage: $0 bullseye|bookworm|trixie|trixie-arm64" >&2; exit 2 ;;
esac
SUITE=${DIST%-arm64}
ARCH=amd64 CONSOLE=ttyS0
case "$DIST" in *-arm64) ARCH=arm64 CONSOLE=ttyAMA0 ;; esac

SELF=$(readlink -f "${BASH_SOURCE[0]}")
CACHE_ROOT=${ONEIRIC_VM_CACHE:-/var/tmp/oneiric-vm-cache}
KEY=$(sha256sum "$SELF" | cut -c1-16)
OUT="$CACHE_ROOT/$DIST-$KEY"

log() { echo "[build-image $DIST] $*" >&2; }

# ---------------------------------------------------------------- host tools
# Installs what is missing, with one `apt-get update` at most. Shared with run.sh.
ensure_host_tools() {
  local missing=() pair cmd pkg
  for pair in "$@"; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing host tools: ${missing[*]}"
  (
    # Serialize against a parallel build of the other dist.
    exec 9>"$CACHE_ROOT/.apt.lock"; flock 9
    if [ ! -e "$CACHE_ROOT/.apt-updated" ] || [ -n "$(find "$CACHE_ROOT/.apt-updated" -mmin +360 2>/dev/null)" ]; then
      apt-get update -qq >&2 && touch "$CACHE_ROOT/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  )
}

mkdir -p "$CACHE_ROOT"
export PATH="$PATH:/usr/sbin:/sbin"

if [ -s "$OUT/root.img" ] && [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ] && [ -e "$OUT/.complete" ]; then
  log "cached: $OUT"
  echo "$OUT"
  exit 0
fi

ensure_host_tools debootstrap:debootstrap mkfs.ext4:e2fsprogs flock:util-linux
[ "$ARCH" = amd64 ] || ensure_host_tools qemu-aarch64-static:qemu-user-static

exec 8>"$CACHE_ROOT/$DIST.lock"
flock 8
# Another build may have finished while we waited for the lock.
if [ -e "$OUT/.complete" ]; then echo "$OUT"; exit 0; fi

# ---------------------------------------------------------------- mirror
mirror_from_host() {
  local f
  # deb822 .sources: first stanza of Types: deb whose suites are not only *-security.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk '
      function flush() { if (types ~ /(^| )deb( |$)/ && uris != "" && suites ~ /(^| )[a-z]+( |$)/) { split(uris, u, " "); print u[1]; found=1; exit } types=""; uris=""; suites="" }
      /^[ \t]*$/ { flush(); next }
      /^Types:/  { sub(/^Types:[ \t]*/, ""); types=$0 }
      /^URIs:/   { sub(/^URIs:[ \t]*/, ""); uris=$0 }
      /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites=$0 }
      END { if (!found) flush() }
    ' "$f" | head -n1
  done
  # one-line format
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk '$1 == "deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) !~ /-security$/ && $(i+1) !~ /-/) { print $i; exit } }' "$f"
  done
}
MIRROR=${ONEIRIC_VM_MIRROR:-$(mirror_from_host | grep -m1 . || true)}
[ -n "$MIRROR" ] || { log "no Debian mirror found in /etc/apt/sources.list.d/ (set ONEIRIC_VM_MIRROR)"; exit 1; }
log "mirror: $MIRROR"

# ---------------------------------------------------------------- rootfs
WORK=$(mktemp -d "$CACHE_ROOT/.build-$DIST.XXXXXX")
ROOT="$WORK/root"
cleanup() {
  # debootstrap mounts proc/sys inside the target; never leave them behind.
  local m
  awk -v r="$ROOT" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r | while IFS= read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

PKGS=systemd,systemd-sysv,dbus,udev,kmod,linux-image-$ARCH,initramfs-tools
# wrk: the load side of the client loops (issue 18: at least 200 requests a second).
PKGS+=,apparmor,procps,iproute2,curl,wrk,ca-certificates,adduser,passwd,less,libsqlite3-0
# trixie: rpm for the rpm scenario, dnf (and gpg, for repo_gpgcheck) for the dnf one.
if [ "$DIST" = trixie ]; then PKGS+=,rpm,dnf,gpg; fi

debootstrap_failed() {
  tail -n 40 "$WORK/debootstrap.log" >&2
  [ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 40 "$ROOT/debootstrap/debootstrap.log" >&2
  exit 1
}
log "debootstrap (minbase, $ARCH) into $ROOT"
t0=$SECONDS
if [ "$ARCH" = amd64 ]; then
  debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    debootstrap_failed
else
  debootstrap --variant=minbase --arch="$ARCH" --foreign --include="$PKGS" "$SUITE" "$ROOT" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || debootstrap_failed
  log "first stage done in $((SECONDS - t0)) s; second stage under qemu-user"
  # The kernel runs the arm64 binaries of the chroot through qemu-aarch64 (binfmt_misc,
  # flag F: the interpreter is opened at registration, so the chroot needs no copy of it).
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
  fi
  t1=$SECONDS
  chroot "$ROOT" /debootstrap/debootstrap --second-stage >>"$WORK/debootstrap.log" 2>&1 || debootstrap_failed
  log "second stage done in $((SECONDS - t1)) s"
fi
log "debootstrap done in $((SECONDS - t0)) s"

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

# Anything the scenarios call that may be split differently between releases.
for tool in systemd-analyze aa-status curl ss pgrep runuser journalctl; do
  in_root sh -c "command -v $tool" >/dev/null || { log "guest lacks $tool"; exit 1; }
done
if [ "$DIST" = trixie ]; then
  for tool in rpm dnf gpg; do in_root sh -c "command -v $tool" >/dev/null || { log "guest lacks $tool"; exit 1; }; done
fi

echo "oneiric-vm-$DIST" >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 oneiric-vm-%s\n::1 localhost\n' "$DIST" >"$ROOT/etc/hosts"
printf 'LABEL=oneiric-root / ext4 rw,errors=remount-ro 0 1\n' >"$ROOT/etc/fstab"
# Root without password: the image is only ever booted by the tests, without network;
# `run.sh --keep` gives a root console on the serial line for debugging.
sed -i 's/^root:[^:]*:/root::/' "$ROOT/etc/shadow"
mkdir -p "$ROOT/etc/systemd/system/serial-getty@$CONSOLE.service.d"
cat >"$ROOT/etc/systemd/system/serial-getty@$CONSOLE.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
EOF
# Persistent journal, so the reboot scenario sees both boots and the host gets them all.
mkdir -p "$ROOT/var/log/journal"
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=persistent\nForwardToConsole=no\n' >"$ROOT/etc/systemd/journald.conf.d/vmtest.conf"
# No network, no timers: nothing but the test should run.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer \
         dpkg-db-backup.timer systemd-timesyncd.service getty@tty1.service; do
  ln -sf /dev/null "$ROOT/etc/systemd/system/$u"
done

# ------------------------------------------------------------ the test hook
# At every boot: unpack the payload disk (serial "payload", a plain tar) into /vmtest and
# run its guest/suite.sh. The suite writes its results to the results disk (serial
# "results") and powers off, or reboots for the reboot scenario. If the hook fails or
# hangs (TimeoutStartSec), FailureAction powers the guest off; ExecStopPost saves what
# results exist first.
mkdir -p "$ROOT/usr/local/sbin"
cat >"$ROOT/usr/local/sbin/vmtest-hook" <<'EOF'
#!/bin/sh
set -u
PAYLOAD=/dev/disk/by-id/virtio-payload
case "${1:-run}" in
run)
  i=0
  while [ ! -b "$PAYLOAD" ] && [ $i -lt 60 ]; do sleep 1; i=$((i+1)); done
  if [ ! -b "$PAYLOAD" ]; then echo "vmtest: no payload disk, nothing to do" >&2; exit 0; fi
  rm -rf /vmtest && mkdir -p /vmtest
  tar -xf "$PAYLOAD" -C /vmtest || { echo "vmtest: cannot unpack payload" >&2; exit 1; }
  exec /bin/bash /vmtest/guest/suite.sh
  ;;
save)
  # Best effort: called by ExecStopPost whatever happened.
  if [ -x /vmtest/guest/collect.sh ]; then /bin/bash /vmtest/guest/collect.sh; fi
  ;;
esac
EOF
chmod 0755 "$ROOT/usr/local/sbin/vmtest-hook"
cat >"$ROOT/etc/systemd/system/vmtest.service" <<'EOF'
[Unit]
Description=Oneiric VM test suite
After=multi-user.target
# Hook fails or is killed by its timeout: power off so the host does not wait for its own timeout.
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/vmtest-hook run
ExecStopPost=/usr/local/sbin/vmtest-hook save
TimeoutStartSec=30min
StandardOutput=journal+console
StandardError=journal+console
# SIGTERM during a reboot that the suite asked for is not a failure.
SuccessExitStatus=SIGTERM

[Install]
WantedBy=multi-user.target
EOF
in_root systemctl enable vmtest.service >/dev/null 2>&1
in_root systemctl set-default multi-user.target >/dev/null 2>&1
in_root apt-get clean
in_root dpkg -l >"$WORK/packages"

# ---------------------------------------------------------------- image
mkdir -p "$OUT.tmp"
rm -f "$OUT.tmp"/*
newest() { printf '%s\n' "$@" | sort -V | tail -n1; }
cp "$(newest "$ROOT"/boot/vmlinuz-*)" "$OUT.tmp/vmlinuz"
cp "$(newest "$ROOT"/boot/initrd.img-*)" "$OUT.tmp/initrd.img"
mv "$WORK/packages" "$OUT.tmp/packages"
log "mkfs.ext4 -d (rootfs $(du -sm "$ROOT" | cut -f1) MB)"
mkfs.ext4 -q -F -L oneiric-root -d "$ROOT" "$OUT.tmp/root.img" 4G >"$WORK/mkfs.log" 2>&1 \
  || { cat "$WORK/mkfs.log" >&2; log "mkfs.ext4 failed"; exit 1; }
touch "$OUT.tmp/.complete"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
# Older images of this dist (other script versions) are dead weight.
# (exactly 16 characters of key: trixie-* must not match trixie-arm64-*)
for old in "$CACHE_ROOT/$DIST"-????????????????; do
  [ "$old" = "$OUT" ] || rm -rf "$old"
done
log "image ready in $((SECONDS)) s: $OUT"
echo "$OUT"
