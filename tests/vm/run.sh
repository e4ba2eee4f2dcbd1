#!/bin/bash
# VM tests: boot real Debian 12/13 guests under QEMU (software emulation) and run the
# .deb/.rpm scenarios of issue 6 inside them on a real systemd with AppArmor.
#
#   tests/vm/run.sh [--dist bookworm|trixie|all] [--scenario NAME]... [--keep] [--nspawn]
#
# --nspawn: quick iteration in systemd-nspawn containers instead of QEMU (seconds to
# boot, but no AppArmor and not a real kernel: the security, no-denials and harness
# scenarios are left out). The suite that counts is the QEMU one.
#
# Prints `PASS dist/scenario` or `FAIL dist/scenario: reason` per scenario (with the
# guest's trace and journal excerpt on failure) and ends with `N passed, N failed`;
# exits non-zero on any failure. See tests/vm/README.md.
#
# Environment:
#   DEB=/path/oneiric_X_amd64.deb  RPM=/path/oneiric-X.x86_64.rpm
#                         packages to test (default: built with packaging/build-deb.sh
#                         and packaging/build-rpm.sh)
#   ONEIRIC_VM_TIMEOUT    seconds for one guest (all its boots), default 1800
#   ONEIRIC_VM_SCENARIO_TIMEOUT  seconds for one scenario inside the guest, default 480
#   ONEIRIC_VM_SMP, ONEIRIC_VM_MEM  guest CPUs (2) and memory in MiB (2048)
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

DISTS=()
SCENARIOS=()
KEEP=0
NSPAWN=0
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  echo "Scenarios: $ALL_SCENARIOS (rpm: trixie only), and the harness self-tests"
  echo "           harness, harness-fail, harness-hang, harness-reboot (no package needed)."
}
ALL_SCENARIOS="install guide reload watchdog crash startlimit security reboot lifecycle rpm no-denials"
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) shift; case "${1:-}" in all) DISTS=(bookworm trixie);; bookworm|trixie) DISTS+=("$1");; *) usage >&2; exit 2;; esac;;
    --dist=*) set -- --dist "${1#--dist=}" "${@:2}"; continue;;
    --scenario) shift; [ -n "${1:-}" ] || { usage >&2; exit 2; }; IFS=', ' read -r -a s <<<"$1"; SCENARIOS+=("${s[@]}");;
    --scenario=*) set -- --scenario "${1#--scenario=}" "${@:2}"; continue;;
    --keep) KEEP=1;;
    --nspawn) NSPAWN=1;;
    -h|--help) usage; exit 0;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2;;
  esac
  shift
done
[ ${#DISTS[@]} -gt 0 ] || DISTS=(bookworm trixie)
for s in "${SCENARIOS[@]}"; do
  case " $ALL_SCENARIOS harness harness-fail harness-hang harness-reboot " in *" $s "*) ;; *) echo "unknown scenario: $s" >&2; usage >&2; exit 2;; esac
done

TIMEOUT=${ONEIRIC_VM_TIMEOUT:-1800}
SCENARIO_TIMEOUT=${ONEIRIC_VM_SCENARIO_TIMEOUT:-480}
SMP=${ONEIRIC_VM_SMP:-1}
MEM=${ONEIRIC_VM_MEM:-2048}
RUNROOT=${ONEIRIC_VM_RUNROOT:-/var/tmp/oneiric-vm-run}
CACHE_ROOT=${ONEIRIC_VM_CACHE:-/var/tmp/oneiric-vm-cache}

log() { echo "[vm] $*" >&2; }

# ------------------------------------------------------------------ plan
# Scenarios of one dist in boot order. "reboot" reboots the guest: what follows runs in
# the second boot. A scenario asked for alone gets what it needs before it.
plan_for() {
  local dist=$1 out=() s
  if [ ${#SCENARIOS[@]} -eq 0 ]; then
    for s in $ALL_SCENARIOS; do
      [ "$s" = rpm ] && [ "$dist" != trixie ] && continue
      [ $NSPAWN = 1 ] && case "$s" in security|no-denials) continue;; esac
      out+=("$s")
    done
  else
    for s in $ALL_SCENARIOS harness harness-fail harness-hang harness-reboot; do
      case " ${SCENARIOS[*]} " in *" $s "*) ;; *) continue;; esac
      [ "$s" = rpm ] && [ "$dist" != trixie ] && { log "rpm runs on trixie only; skipped on $dist"; continue; }
      [ $NSPAWN = 1 ] && case "$s" in security|no-denials|harness*) log "$s needs QEMU; skipped with --nspawn"; continue;; esac
      case "$s" in
        guide|reload|watchdog|crash|startlimit|security|reboot|no-denials)
          case " ${out[*]} " in *" install "*) ;; *) out+=(install);; esac;;
      esac
      out+=("$s")
    done
  fi
  echo "${out[*]}"
}
needs() { # needs WHAT PLAN -> true if a scenario of PLAN needs deb|rpm
  local what=$1 s; shift
  for s in $*; do
    case "$what:$s" in
      deb:harness*|rpm:harness*) ;;
      deb:rpm) ;;
      deb:*) return 0;;
      rpm:rpm) return 0;;
    esac
  done
  return 1
}

# ------------------------------------------------------------ host tools
ensure_tool() { # ensure_tool CMD PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  mkdir -p "$CACHE_ROOT"
  (
    exec 9>"$CACHE_ROOT/.apt.lock"; flock 9
    if [ ! -e "$CACHE_ROOT/.apt-updated" ] || [ -n "$(find "$CACHE_ROOT/.apt-updated" -mmin +360)" ]; then
      apt-get update -qq >&2 && touch "$CACHE_ROOT/.apt-updated"
    fi
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2
  )
}
# One at a time: Debian's qemu-system-x86 may replace a newer qemu-utils, so qemu-img is
# checked after it.
ensure_tool qemu-system-x86_64 qemu-system-x86
ensure_tool qemu-img qemu-utils
ensure_tool dpkg-deb dpkg
ensure_tool flock util-linux
if [ $NSPAWN = 1 ]; then
  ensure_tool systemd-nspawn systemd-container
  ensure_tool debugfs e2fsprogs
fi

# ---------------------------------------------------------------- images
# Build missing images in the background while the packages build; run_dist's own
# build-image.sh call then waits for them (lock) and finds them cached.
PREBUILD=()
for d in "${DISTS[@]}"; do
  mkdir -p "$RUNROOT"
  setsid bash "$HERE/build-image.sh" "$d" >"$RUNROOT/build-image-$d.log" 2>&1 </dev/null &
  PREBUILD+=($!)
done
stop_prebuild() {
  local p
  for p in "${PREBUILD[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
}
trap stop_prebuild EXIT
trap 'exit 130' INT TERM HUP

# -------------------------------------------------------------- packages
ALL_PLANS=""
for d in "${DISTS[@]}"; do ALL_PLANS+=" $(plan_for "$d")"; done
PKG_ERR=""
DEB=${DEB:-}
RPM=${RPM:-}
if needs deb $ALL_PLANS && [ -z "$DEB" ]; then
  if [ -x "$REPO/packaging/build-deb.sh" ] || [ -f "$REPO/packaging/build-deb.sh" ]; then
    log "building the .deb: packaging/build-deb.sh"
    if out=$(cd "$REPO" && bash packaging/build-deb.sh 2>"$RUNROOT.build-deb.log"); then
      DEB=$(printf '%s\n' "$out" | grep '\.deb$' | tail -n1)
    else
      tail -n 30 "$RUNROOT.build-deb.log" >&2
    fi
    [ -n "$DEB" ] || PKG_ERR="packaging/build-deb.sh failed or printed no .deb path (log: $RUNROOT.build-deb.log)"
  else
    PKG_ERR="no .deb: set DEB=/path/to.deb or provide packaging/build-deb.sh"
  fi
fi
if needs rpm $ALL_PLANS && [ -z "$RPM" ]; then
  if [ -f "$REPO/packaging/build-rpm.sh" ]; then
    log "building the .rpm: packaging/build-rpm.sh"
    if out=$(cd "$REPO" && bash packaging/build-rpm.sh 2>"$RUNROOT.build-rpm.log"); then
      RPM=$(printf '%s\n' "$out" | grep '\.rpm$' | tail -n1)
    else
      tail -n 30 "$RUNROOT.build-rpm.log" >&2
    fi
  fi
fi
[ -z "$DEB" ] || [ -f "$DEB" ] || PKG_ERR="DEB=$DEB does not exist"
[ -z "$RPM" ] || [ -f "$RPM" ] || { log "RPM=$RPM does not exist"; RPM=""; }
[ -n "$DEB" ] && DEB=$(readlink -f "$DEB")
[ -n "$RPM" ] && RPM=$(readlink -f "$RPM")
[ -n "$DEB" ] && log "deb: $DEB"
[ -n "$RPM" ] && log "rpm: $RPM"

# The upgrade test needs an older package: the same .deb repacked with a lower version.
make_old_deb() { # make_old_deb IN OUT
  local tmp ver old
  tmp=$(mktemp -d)
  ver=$(dpkg-deb -f "$1" Version)
  old="${ver}~vmtest.old"      # '~' sorts before anything: always lower than $ver
  dpkg --compare-versions "$old" lt "$ver"
  dpkg-deb -R "$1" "$tmp/x"
  sed -i "s/^Version: .*/Version: $old/" "$tmp/x/DEBIAN/control"
  dpkg-deb --root-owner-group -Zxz -b "$tmp/x" "$2" >/dev/null
  rm -rf "$tmp"
}

# ------------------------------------------------------------- the guests
mkdir -p "$RUNROOT"
PASSED=0
FAILED=0
W=""
TPID=""
cleanup() {
  local rc=$?
  stop_qemu
  stop_prebuild
  if [ -n "$W" ] && [ -d "$W" ] && [ $KEEP -eq 0 ]; then rm -rf "$W"; fi
  exit $rc
}
stop_qemu() {
  # The outer `timeout` and QEMU (pid file); QEMU starts no helper of its own here
  # (no network, no display).
  local p
  if [ -n "$TPID" ]; then kill -TERM "$TPID" 2>/dev/null || true; fi
  if [ -n "$W" ] && [ -s "$W/qemu.pid" ]; then
    p=$(cat "$W/qemu.pid")
    if [ -d "/proc/$p" ] && grep -q qemu "/proc/$p/comm" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
  fi
  if [ -n "$TPID" ]; then kill -KILL "$TPID" 2>/dev/null || true; wait "$TPID" 2>/dev/null || true; fi
  TPID=""
  [ $NSPAWN = 1 ] && kill_container || true
}
kill_container() {
  # Every process whose root is our container's rootfs (nspawn killed by a signal may
  # leave the container's init behind), then the empty cgroups nspawn leaves without a
  # host systemd.
  local p r
  [ -n "$W" ] && [ -d "$W/rootfs" ] || return 0
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    [ "$r" = "$W/rootfs" ] && kill -KILL "${p#/proc/}" 2>/dev/null
  done
  local top
  for top in $(find /sys/fs/cgroup -maxdepth 2 -type d \( -name payload -o -name supervisor \) 2>/dev/null); do
    find "$top" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

report() { # report DIST NAME STATUS [DETAILS-FILE...]
  local dist=$1 name=$2 status=$3; shift 3
  if [ "$status" = PASS ]; then
    echo "PASS $dist/$name"; PASSED=$((PASSED + 1))
  else
    echo "FAIL $dist/$name: $status"; FAILED=$((FAILED + 1))
    local f
    for f in "$@"; do
      [ -s "$f" ] || continue
      echo "    --- $(basename "$f")"
      sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\r//g; s/^/    /' "$f"
    done
  fi
}

qemu_args() { # qemu_args IMAGE-DIR WORK-DIR [EXTRA-KERNEL-ARGS]
  local img=$1 w=$2 extra=${3:-}
  local args=(
    qemu-system-x86_64 -name "oneiric-vm" -accel tcg -cpu max
    -smp "$SMP" -m "$MEM" -nodefaults -no-user-config -display none -monitor none
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img"
    -append "root=LABEL=oneiric-root rw console=ttyS0 apparmor=1 security=apparmor panic=-1 loglevel=4 net.ifnames=0$extra"
    -drive "file=$w/root.qcow2,format=qcow2,if=none,id=root,cache=unsafe,discard=unmap"
    -device virtio-blk-pci,drive=root,serial=root
    -device virtio-rng-pci
  )
  printf '%q ' "${args[@]}"
}

run_nspawn() { # the --nspawn variant of the boot loop: sets rc and boot
  rm -rf "$W/rootfs"; mkdir -p "$W/rootfs"
  # The cached image is ext4: copy its tree out (owners and modes kept) without mounting it.
  debugfs -R "rdump / $W/rootfs" "$img/root.img" >"$W/rdump.log" 2>&1 || true
  [ -e "$W/rootfs/etc/os-release" ] || { rc=1; log "debugfs rdump failed: $(tail -n 3 "$W/rdump.log")"; return; }
  mkdir -p "$W/rootfs/vmtest" "$W/rootfs/etc/systemd/system/vmtest.service.d"
  cp -a "$W/payload/." "$W/rootfs/vmtest/"
  printf '[Service]\nExecStart=\nExecStart=/bin/bash /vmtest/guest/suite.sh\n' \
    >"$W/rootfs/etc/systemd/system/vmtest.service.d/nspawn.conf"
  while :; do
    left=$((deadline - SECONDS))
    if [ $left -le 0 ]; then rc=124; break; fi
    log "$dist: nspawn boot $boot (timeout ${left}s), plan: $plan"
    SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 timeout -k 10 "$left" systemd-nspawn -q -b -D "$W/rootfs" \
      --register=no --keep-unit --private-network --console=pipe --machine="oneiric-vm-$dist" \
      </dev/null >"$W/serial-$boot.log" 2>&1 &
    TPID=$!
    rc=0; wait "$TPID" || rc=$?
    TPID=""
    kill_container
    rm -rf "$W/out/results"
    cp -a "$W/rootfs/var/lib/vmtest/results" "$W/out/" 2>/dev/null || true
    # nspawn exits 133 when the container reboots.
    if [ $rc -eq 133 ] && [ -e "$W/out/results/rebooting" ] && [ ! -e "$W/out/results/finished" ] && [ $boot -lt 3 ]; then
      boot=$((boot + 1))
      continue
    fi
    break
  done
  [ $rc -eq 133 ] && rc=0
  return 0
}

run_dist() {
  local dist=$1 plan img t0 boot rc deadline left serial
  plan=$(plan_for "$dist")
  t0=$SECONDS
  if [ -n "$PKG_ERR" ] && needs deb $plan; then
    for s in $plan; do report "$dist" "$s" "$PKG_ERR"; done
    return
  fi
  log "$dist: image"
  if ! img=$(bash "$HERE/build-image.sh" "$dist" | tail -n1) || [ ! -s "$img/root.img" ]; then
    for s in $plan; do report "$dist" "$s" "guest image build failed (tests/vm/build-image.sh $dist)"; done
    return
  fi
  log "$dist: image ready after $((SECONDS - t0)) s: $img"

  W=$(mktemp -d "$RUNROOT/$dist.XXXXXX")
  mkdir -p "$W/payload/pkgs" "$W/out"
  cp -r "$HERE/guest" "$W/payload/guest"
  if [ -n "$DEB" ]; then
    cp "$DEB" "$W/payload/pkgs/oneiric.deb"
    case " $plan " in *" lifecycle "*) make_old_deb "$DEB" "$W/payload/pkgs/oneiric-old.deb";; esac
  fi
  [ -n "$RPM" ] && cp "$RPM" "$W/payload/pkgs/oneiric.rpm"
  {
    echo "DIST=$dist"
    echo "PLAN='$plan'"
    echo "SCENARIO_TIMEOUT=$SCENARIO_TIMEOUT"
  } >"$W/payload/config"
  tar -C "$W/payload" -cf "$W/payload.tar" .
  # Copy-on-write overlay: the cached image stays clean.
  qemu-img create -q -f qcow2 -F raw -b "$img/root.img" "$W/root.qcow2"

  deadline=$((SECONDS + TIMEOUT))
  boot=1
  if [ $NSPAWN = 1 ]; then run_nspawn; else
  # Boot; the reboot scenario makes the guest ask for a reboot, which QEMU (-no-reboot)
  # turns into an exit: boot the same disk again (at most 3 boots), as a real reboot.
  while :; do
    left=$((deadline - SECONDS))
    serial="$W/serial-$boot.log"
    rm -rf "$W/out/results"
    truncate -s 0 "$W/results.img"; truncate -s 1G "$W/results.img"
    if [ $left -le 0 ]; then rc=124; break; fi
    log "$dist: boot $boot (timeout ${left}s), plan: $plan"
    # No login prompt on the serial console during the tests (--keep's interactive boot has one).
    eval "set -- $(qemu_args "$img" "$W" " systemd.mask=serial-getty@ttyS0.service")"
    timeout -k 10 "$left" "$@" -no-reboot -serial "file:$serial" -pidfile "$W/qemu.pid" \
      -drive "file=$W/payload.tar,format=raw,if=none,id=payload,readonly=on" -device virtio-blk-pci,drive=payload,serial=payload \
      -drive "file=$W/results.img,format=raw,if=none,id=results" -device virtio-blk-pci,drive=results,serial=results \
      </dev/null >"$W/qemu-$boot.out" 2>&1 &
    TPID=$!
    rc=0; wait "$TPID" || rc=$?
    TPID=""
    stop_qemu
    tar -C "$W/out" -xf "$W/results.img" 2>/dev/null || true
    if [ $rc -eq 0 ] && [ -e "$W/out/results/rebooting" ] && [ ! -e "$W/out/results/finished" ] && [ $boot -lt 3 ]; then
      boot=$((boot + 1))
      continue
    fi
    break
  done
  fi
  log "$dist: guest done after $((SECONDS - t0)) s ($([ $NSPAWN = 1 ] && echo nspawn || echo QEMU) exit $rc, $boot boot(s))"

  local why="" n=0 name st
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then why="guest timed out after ${TIMEOUT}s (ONEIRIC_VM_TIMEOUT); QEMU killed"
  elif [ $rc -ne 0 ]; then why="QEMU exited $rc: $(tail -n 3 "$W/qemu-$boot.out" | tr '\n' ' ')"
  elif [ ! -d "$W/out/results" ]; then why="no results from the guest (see serial log below)"
  fi
  local printed_serial=0
  for name in $plan; do
    st="$W/out/results/$(printf '%02d' $n)-$name"
    if [ -s "$st.status" ]; then
      local s; s=$(sed 's/ ([0-9]* s)$//' "$st.status")
      if [ "$s" = PASS ]; then report "$dist" "$name" PASS
      else
        tail -n 40 "$st.log" >"$st.trace" 2>/dev/null || true
        report "$dist" "$name" "${s#FAIL: }" "$st.trace" "$st.journal"
      fi
    else
      local tails=()
      if [ $printed_serial -eq 0 ]; then
        tail -n 40 "$serial" >"$W/serial.tail" 2>/dev/null || true
        tails=("$W/serial.tail")
        [ -s "$st.log" ] && { tail -n 30 "$st.log" >"$W/running.tail"; tails+=("$W/running.tail"); }
        printed_serial=1
      fi
      report "$dist" "$name" "did not finish: ${why:-the guest stopped before it}" "${tails[@]}"
    fi
    n=$((n + 1))
  done
  mkdir -p "$RUNROOT/last"
  rm -rf "$RUNROOT/last/$dist-results"
  [ -d "$W/out/results" ] && cp -a "$W/out/results" "$RUNROOT/last/$dist-results"
  if [ -s "$W/out/results/journal.txt" ]; then
    cp "$W/out/results/journal.txt" "$RUNROOT/last/$dist-journal.txt"
    cp "$W/out/results/kernel.txt" "$RUNROOT/last/$dist-kernel.txt" 2>/dev/null || true
  fi
  for f in "$W"/serial-*.log; do [ -e "$f" ] && cp "$f" "$RUNROOT/last/$dist-$(basename "$f")"; done
  log "$dist: $((SECONDS - t0)) s in all; scenario traces, guest journal and kernel log in $RUNROOT/last/"

  if [ $KEEP -eq 1 ]; then
    rm -f "$W/payload.tar" "$W/results.img"
    echo "kept $dist guest in $W; boot it interactively (root console, Ctrl-a x quits) with:"
    echo "  $(qemu_args "$img" "$W") -serial mon:stdio"
    echo "  (results are in $W/out/results; in the guest: /var/lib/vmtest, journalctl -u oneiric)"
  else
    rm -rf "$W"
  fi
  W=""
}

T_ALL=$SECONDS
# nspawn runs share the host's cgroups without a host systemd: one at a time.
if [ "${ONEIRIC_VM_PARALLEL:-1}" = 1 ] && [ $NSPAWN = 0 ] && [ ${#DISTS[@]} -gt 1 ]; then
  # One guest per dist at the same time: each has one vCPU, the host has two cores.
  CHILDREN=()
  for d in "${DISTS[@]}"; do
    (
      W=""; TPID=""
      trap 'stop_qemu; if [ -n "$W" ] && [ -d "$W" ] && [ $KEEP -eq 0 ]; then rm -rf "$W"; fi' EXIT
      trap 'exit 143' TERM INT HUP
      run_dist "$d"
    ) >"$RUNROOT/report-$d.$$" &
    CHILDREN+=($!)
  done
  trap 'log "interrupted"; kill -TERM "${CHILDREN[@]}" 2>/dev/null; wait; rm -f "$RUNROOT"/report-*."$$"; exit 130' INT TERM HUP
  wait "${CHILDREN[@]}" || true
  trap 'log "interrupted"; exit 130' INT TERM HUP
  for d in "${DISTS[@]}"; do
    f="$RUNROOT/report-$d.$$"
    cat "$f"
    PASSED=$((PASSED + $(grep -c '^PASS ' "$f" || true)))
    FAILED=$((FAILED + $(grep -c '^FAIL ' "$f" || true)))
    rm -f "$f"
  done
else
  for d in "${DISTS[@]}"; do run_dist "$d"; done
fi
log "all guests: $((SECONDS - T_ALL)) s"
echo "$PASSED passed, $FAILED failed"
[ $FAILED -eq 0 ]
