#!/bin/bash
# VM tests: boot real Debian 11/12/13 guests under QEMU (software emulation) and run the
# .deb/.rpm scenarios of issue 6 inside them on a real systemd with AppArmor.
#
#   tests/vm/run.sh [--dist bullseye|bookworm|trixie|trixie-arm64|all] [--scenario NAME]... [--keep] [--nspawn]
#   tests/vm/run.sh --plan [--dist ...] [--scenario ...]   print the plan of each dist, run nothing
#   tests/vm/run.sh --images [--dist ...]   build (or find cached) the guest images, nothing else
#                         (tests/run-all.sh starts this in the background at its start)
#
# --nspawn: quick iteration in systemd-nspawn containers instead of QEMU (seconds to
# boot, but no AppArmor and not a real kernel: the security, no-denials and harness
# scenarios are left out). The suite that counts is the QEMU one.
#
# The scenarios are the files guest/scenarios/*.sh; each declares in a `# vm:` header line
# what it needs, which dists it runs on and where in the boot order it goes (README).
#
# Prints `PASS dist/scenario` or `FAIL dist/scenario: reason` per scenario (with the
# guest's trace and journal excerpt on failure) and ends with `N passed, N failed`
# (tests/lib.sh); exits non-zero on any failure. See tests/vm/README.md.
#
# Environment:
#   DEB=/path/oneiric_X_amd64.deb  RPM=/path/oneiric-X.x86_64.rpm
#                         packages to test (default: built with packaging/build-deb.sh
#                         and packaging/build-rpm.sh)
#   DEB_ARM64=/path/oneiric_X_arm64.deb   the .deb of the trixie-arm64 guest (default:
#                         packaging/build-deb.sh arm64)
#   ONEIRIC_VM_TIMEOUT    seconds for one guest (all its boots), default 1800
#   ONEIRIC_VM_SCENARIO_TIMEOUT  seconds for one scenario inside the guest, default 480
#   ONEIRIC_VM_SMP, ONEIRIC_VM_MEM  guest CPUs (1) and memory in MiB (2048)
#   ONEIRIC_VM_JOBS       guests at the same time (default: the host's cores)
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

ALL_DISTS=(bullseye bookworm trixie)
# Only when asked for by name (--dist trixie-arm64; ONEIRIC_TEST_STAGES=arm64 of run-all):
# Debian 13 arm64 under qemu-system-aarch64 (TCG), with the .deb for arm64. Its default
# plan is ARM64_SCENARIOS: the whole suite under aarch64 emulation does not fit a CI run.
ARM64_DISTS=(trixie-arm64)
ARM64_SCENARIOS="install guide reload watchdog reboot"
T_LOG_TAG=vm
# shellcheck source=tests/lib.sh
. "$REPO/tests/lib.sh"
log() { t_log "$@"; }

# ------------------------------------------------------------- scenarios
# Each guest/scenarios/NAME.sh has one header line (the first `# vm:` line) of key=value
# fields; unknown keys are an error:
#   needs=deb|rpm|none   the package the guest must be given (none: harness self-tests)
#   after=A,B            scenarios that must run before it (added when it is asked alone)
#   boot=1|2             1: first boot; 2: ordered after every boot-1 scenario (it runs in
#                        the second boot when a reboot=1 scenario is planned before it)
#   reboot=1             the guest reboots (a real `systemctl reboot`) right before it
#   order=N              position inside its boot, ascending (ties: by name)
#   dists=all|D,D        the dists it applies to
#   qemu=1               needs the real kernel (AppArmor): left out with --nspawn
#   default=0            only run when asked for with --scenario (harness self-tests)
#   repos=1              needs the signed repository trees (tests/packaging/repos.sh) in
#                        the payload, at /vmtest/repos
SCEN_DIR=$HERE/guest/scenarios
declare -A S_NEEDS S_AFTER S_BOOT S_REBOOT S_ORDER S_DISTS S_QEMU S_DEFAULT S_REPOS
ALL_SCENARIOS=""
load_scenarios() {
  local f name hdr kv k v
  for f in "$SCEN_DIR"/*.sh; do
    name=$(basename "$f" .sh)
    hdr=$(grep -m1 '^# vm:' "$f" || true)
    [ -n "$hdr" ] || { echo "$f: no '# vm:' header line" >&2; exit 2; }
    S_NEEDS[$name]=deb S_AFTER[$name]="" S_BOOT[$name]=1 S_REBOOT[$name]=0 S_ORDER[$name]=50
    S_DISTS[$name]=all S_QEMU[$name]=0 S_DEFAULT[$name]=1 S_REPOS[$name]=0
    for kv in ${hdr#"# vm:"}; do
      k=${kv%%=*} v=${kv#*=}
      case "$k" in
        needs) case "$v" in deb|rpm|none) S_NEEDS[$name]=$v;; *) echo "$f: needs=$v" >&2; exit 2;; esac;;
        after) S_AFTER[$name]=${v//,/ };;
        boot) case "$v" in 1|2) S_BOOT[$name]=$v;; *) echo "$f: boot=$v" >&2; exit 2;; esac;;
        reboot) S_REBOOT[$name]=$v;;
        order) S_ORDER[$name]=$v;;
        dists) S_DISTS[$name]=${v//,/ };;
        qemu) S_QEMU[$name]=$v;;
        default) S_DEFAULT[$name]=$v;;
        repos) S_REPOS[$name]=$v;;
        *) echo "$f: unknown header key '$k'" >&2; exit 2;;
      esac
    done
    ALL_SCENARIOS+=" $name"
  done
  # Boot order: boot, then order, then name.
  ALL_SCENARIOS=$(for name in $ALL_SCENARIOS; do
    printf '%s %03d %s\n' "${S_BOOT[$name]}" "${S_ORDER[$name]}" "$name"; done | sort | awk '{ print $3 }' | tr '\n' ' ')
}
load_scenarios

DISTS=()
SCENARIOS=()
KEEP=0
NSPAWN=0
PLAN_ONLY=0
IMAGES_ONLY=0
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  local name
  echo "Scenarios (boot order; from guest/scenarios/*.sh):"
  for name in $ALL_SCENARIOS; do
    printf '  %-15s needs=%s boot=%s dists=%s%s%s\n' "$name" "${S_NEEDS[$name]}" "${S_BOOT[$name]}" \
      "${S_DISTS[$name]// /,}" "$([ "${S_QEMU[$name]}" = 1 ] && echo ' qemu')" \
      "$([ "${S_DEFAULT[$name]}" = 0 ] && echo ' (only when asked for)')"
  done
}
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) shift
      case " all ${ALL_DISTS[*]} ${ARM64_DISTS[*]} " in *" ${1:-} "*) ;; *) usage >&2; exit 2;; esac
      if [ "$1" = all ]; then DISTS=("${ALL_DISTS[@]}"); else DISTS+=("$1"); fi;;
    --dist=*) set -- --dist "${1#--dist=}" "${@:2}"; continue;;
    --scenario) shift; [ -n "${1:-}" ] || { usage >&2; exit 2; }; IFS=', ' read -r -a s <<<"$1"; SCENARIOS+=("${s[@]}");;
    --scenario=*) set -- --scenario "${1#--scenario=}" "${@:2}"; continue;;
    --keep) KEEP=1;;
    --nspawn) NSPAWN=1;;
    --plan) PLAN_ONLY=1;;
    --images) IMAGES_ONLY=1;;
    -h|--help) usage; exit 0;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2;;
  esac
  shift
done
[ ${#DISTS[@]} -gt 0 ] || DISTS=("${ALL_DISTS[@]}")
for s in "${SCENARIOS[@]}"; do
  case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "unknown scenario: $s" >&2; usage >&2; exit 2;; esac
done

TIMEOUT=${ONEIRIC_VM_TIMEOUT:-1800}
SCENARIO_TIMEOUT=${ONEIRIC_VM_SCENARIO_TIMEOUT:-480}
SMP=${ONEIRIC_VM_SMP:-1}
MEM=${ONEIRIC_VM_MEM:-2048}
RUNROOT=${ONEIRIC_VM_RUNROOT:-/var/tmp/oneiric-vm-run}
CACHE_ROOT=${ONEIRIC_VM_CACHE:-/var/tmp/oneiric-vm-cache}

# ------------------------------------------------------------------ plan
applies() { # applies NAME DIST -> the scenario runs on DIST (and in this mode)
  case " ${S_DISTS[$1]} " in *" all "*|*" $2 "*) ;; *) return 1;; esac
  [ $NSPAWN = 0 ] || [ "${S_QEMU[$1]}" != 1 ]
}
# Scenarios of one dist in boot order. A scenario asked for alone gets what it needs
# (after=) before it; one that does not apply to the dist is left out with a note.
plan_for() {
  local dist=$1 name want=" " a
  if [ ${#SCENARIOS[@]} -eq 0 ] && [ "${dist%-arm64}" != "$dist" ]; then
    for name in $ARM64_SCENARIOS; do applies "$name" "$dist" && want+="$name "; done
  elif [ ${#SCENARIOS[@]} -eq 0 ]; then
    for name in $ALL_SCENARIOS; do
      [ "${S_DEFAULT[$name]}" = 1 ] && applies "$name" "$dist" && want+="$name "
    done
  else
    for name in "${SCENARIOS[@]}"; do
      if ! applies "$name" "$dist"; then
        log "$name does not run on $dist$([ $NSPAWN = 1 ] && echo ' or with --nspawn'); left out there"
        continue
      fi
      want+="$name "
      for a in ${S_AFTER[$name]}; do
        applies "$a" "$dist" && want+="$a "
      done
    done
  fi
  local out=()
  for name in $ALL_SCENARIOS; do
    case "$want" in *" $name "*) out+=("$name");; esac
  done
  echo "${out[*]}"
}
# Index in PLAN of the first reboot=1 scenario: the guest reboots before it (none: -1).
reboot_at() {
  local i=0 name
  for name in "$@"; do
    [ "${S_REBOOT[$name]}" = 1 ] && { echo "$i"; return; }
    i=$((i + 1))
  done
  echo -1
}
if [ "$PLAN_ONLY" = 1 ]; then
  for d in "${DISTS[@]}"; do
    read -r -a p <<<"$(plan_for "$d")"
    echo "$d: ${p[*]} (reboot before #$(reboot_at "${p[@]}"))"
  done
  exit 0
fi
needs() { # needs deb|rpm|repos NAME... -> true if one of the scenarios needs that
  local what=$1 name; shift        # (the repository trees are made from both packages)
  for name in "$@"; do
    [ "${S_REPOS[$name]}" = 1 ] && return 0
    [ "$what" != repos ] && [ "${S_NEEDS[$name]}" = "$what" ] && return 0
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
case " ${DISTS[*]} " in *-arm64" "*) ensure_tool qemu-system-aarch64 qemu-system-arm;; esac
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
# shellcheck disable=SC2317 # run from the EXIT trap
stop_prebuild() {
  local p
  for p in "${PREBUILD[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
}
trap stop_prebuild EXIT
trap 'exit 130' INT TERM HUP
if [ "$IMAGES_ONLY" = 1 ]; then
  rc=0
  for i in "${!DISTS[@]}"; do
    if wait "${PREBUILD[$i]}"; then log "${DISTS[$i]}: image ready"; else rc=1; log "${DISTS[$i]}: image build failed: $(tail -n 1 "$RUNROOT/build-image-${DISTS[$i]}.log")"; fi
  done
  PREBUILD=()
  exit "$rc"
fi

# -------------------------------------------------------------- packages
ALL_PLANS=()
for d in "${DISTS[@]}"; do read -r -a p <<<"$(plan_for "$d")"; ALL_PLANS+=("${p[@]}"); done
PKG_ERR=""
DEB=${DEB:-}
RPM=${RPM:-}
if needs deb "${ALL_PLANS[@]}" && [ -z "$DEB" ]; then
  if [ -x "$REPO/packaging/build-deb.sh" ] || [ -f "$REPO/packaging/build-deb.sh" ]; then
    log "building the .deb: packaging/build-deb.sh"
    if built=$(cd "$REPO" && bash packaging/build-deb.sh 2>"$RUNROOT.build-deb.log"); then
      DEB=$(printf '%s\n' "$built" | grep '\.deb$' | tail -n1)
    else
      tail -n 30 "$RUNROOT.build-deb.log" >&2
    fi
    [ -n "$DEB" ] || PKG_ERR="packaging/build-deb.sh failed or printed no .deb path (log: $RUNROOT.build-deb.log)"
  else
    PKG_ERR="no .deb: set DEB=/path/to.deb or provide packaging/build-deb.sh"
  fi
fi
if needs rpm "${ALL_PLANS[@]}" && [ -z "$RPM" ]; then
  if [ -f "$REPO/packaging/build-rpm.sh" ]; then
    log "building the .rpm: packaging/build-rpm.sh"
    if built=$(cd "$REPO" && bash packaging/build-rpm.sh 2>"$RUNROOT.build-rpm.log"); then
      RPM=$(printf '%s\n' "$built" | grep '\.rpm$' | tail -n1)
    else
      tail -n 30 "$RUNROOT.build-rpm.log" >&2
    fi
  fi
fi
PKG_ERR_ARM64=""
DEB_ARM64=${DEB_ARM64:-}
if [ -z "$DEB_ARM64" ] && case " ${DISTS[*]} " in *-arm64" "*) true;; *) false;; esac; then
  log "building the arm64 .deb: packaging/build-deb.sh arm64"
  if built=$(cd "$REPO" && bash packaging/build-deb.sh arm64 2>"$RUNROOT.build-deb-arm64.log"); then
    DEB_ARM64=$(printf '%s\n' "$built" | grep '\.deb$' | tail -n1)
    [ -z "$DEB_ARM64" ] || DEB_ARM64=$(cd "$REPO" && readlink -f "$DEB_ARM64")
  else
    tail -n 30 "$RUNROOT.build-deb-arm64.log" >&2
  fi
  [ -n "$DEB_ARM64" ] || PKG_ERR_ARM64="packaging/build-deb.sh arm64 failed (log: $RUNROOT.build-deb-arm64.log)"
fi
[ -z "$DEB_ARM64" ] || [ -f "$DEB_ARM64" ] || PKG_ERR_ARM64="DEB_ARM64=$DEB_ARM64 does not exist"
[ -z "$DEB" ] || [ -f "$DEB" ] || PKG_ERR="DEB=$DEB does not exist"
[ -z "$RPM" ] || [ -f "$RPM" ] || { log "RPM=$RPM does not exist"; RPM=""; }
[ -n "$DEB" ] && DEB=$(readlink -f "$DEB")
[ -n "$RPM" ] && RPM=$(readlink -f "$RPM")
[ -n "$DEB" ] && log "deb: $DEB"
[ -n "$RPM" ] && log "rpm: $RPM"

# The upgrade tests need an older package: the same package repacked with a lower
# version, same files and scripts (so the upgrade runs exactly the new scripts).
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
# The .rpm: rebuilt with Debian's rpmbuild from its own payload, file attributes, config
# flags, scriptlets and requires, at version VERSION~vmtest.old ('~' sorts lower in rpm too).
make_old_rpm() { # make_old_rpm IN OUT
  local tmp in=$1 tag body
  tmp=$(mktemp -d)
  mkdir -p "$tmp/root" "$tmp/top"
  (cd "$tmp/root" && rpm2cpio "$in" | cpio -idm --quiet)
  q() { rpm -qp --qf "$1" "$in" 2>/dev/null; }
  {
    echo "Name: $(q '%{NAME}')"
    echo "Version: $(q '%{VERSION}')~vmtest.old"
    echo "Release: $(q '%{RELEASE}')"
    echo "Summary: $(q '%{SUMMARY}')"
    echo "License: $(q '%{LICENSE}')"
    echo "AutoReqProv: no"
    rpm -qp --requires "$in" 2>/dev/null | grep -v '^rpmlib(' | sed 's/^/Requires: /'
    echo "%global __os_install_post %{nil}"
    echo "%global _build_id_links none"
    echo "%description"
    q '%{DESCRIPTION}'; echo
    for tag in PREIN:pre POSTIN:post PREUN:preun POSTUN:postun; do
      body=$(q "%{${tag%%:*}}")
      if [ -n "$body" ] && [ "$body" != "(none)" ]; then
        echo "%${tag#*:} -p /bin/sh"
        printf '%s\n' "$body"
      fi
    done
    echo "%files"
    # mode user group f<flags> path -> %attr(...) [%config(noreplace)] path
    rpm -qp --qf '[%{FILEMODES:octal} %{FILEUSERNAME} %{FILEGROUPNAME} f%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$in" 2>/dev/null |
      awk '{ m = substr($1, length($1) - 3); c = ""; if ($4 ~ /c/) c = ($4 ~ /n/) ? "%config(noreplace) " : "%config "
             printf "%%attr(%s,%s,%s) %s%s\n", m, $2, $3, c, $5 }'
  } >"$tmp/old.spec"
  rpmbuild -bb --quiet --define "_topdir $tmp/top" --define "_rpmdir $tmp/out" \
    --define '_binary_payload w9.xzdio' --buildroot "$tmp/root" "$tmp/old.spec" >"$tmp/rpmbuild.log" 2>&1 ||
    { cat "$tmp/rpmbuild.log" >&2; rm -rf "$tmp"; return 1; }
  mv "$(find "$tmp/out" -name '*.rpm' | head -n 1)" "$2"
  rm -rf "$tmp"
}
OLD_DEB=""
OLD_RPM=""
OLD_DEB_ARM64=""
if [ -n "$DEB_ARM64" ] && [ -z "$PKG_ERR_ARM64" ]; then
  OLD_DEB_ARM64=$RUNROOT/oneiric-old-arm64.deb
  make_old_deb "$DEB_ARM64" "$OLD_DEB_ARM64" || { log "could not repack $DEB_ARM64"; OLD_DEB_ARM64=""; }
fi
if [ -n "$DEB" ]; then
  OLD_DEB=$RUNROOT/oneiric-old.deb
  make_old_deb "$DEB" "$OLD_DEB" || { log "could not repack $DEB with a lower version"; OLD_DEB=""; }
fi
if [ -n "$RPM" ]; then
  OLD_RPM=$RUNROOT/oneiric-old.rpm
  ensure_tool rpmbuild rpm
  ensure_tool cpio cpio
  make_old_rpm "$RPM" "$OLD_RPM" || { log "could not rebuild $RPM with a lower version"; OLD_RPM=""; }
fi

# The signed repositories of issue 17 (tests/packaging/repos.sh, as the packaging stage
# checks them), seen by the guests at /vmtest/repos: made once per run on the host.
REPOS_DIR=""
if needs repos "${ALL_PLANS[@]}" && [ -n "$DEB" ] && [ -n "$RPM" ]; then
  t_repos=$SECONDS
  if ONEIRIC_REPOS_BASE=/vmtest/repos bash "$REPO/tests/packaging/repos.sh" make "$RUNROOT/repos" "$DEB" "$RPM" >"$RUNROOT/repos.log" 2>&1; then
    REPOS_DIR=$RUNROOT/repos
    log "repository trees in $REPOS_DIR ($((SECONDS - t_repos)) s)"
  else
    log "tests/packaging/repos.sh make failed: $(grep -E '^FAIL ' "$RUNROOT/repos.log" | head -n 1)"
  fi
fi

# ------------------------------------------------------------- the guests
mkdir -p "$RUNROOT"
W=""
TPID=""
# shellcheck disable=SC2317 # run from the EXIT trap
cleanup() {
  local rc=$?
  stop_qemu
  stop_prebuild
  if [ -n "$W" ] && [ -d "$W" ] && [ "$KEEP" -eq 0 ]; then rm -rf "$W"; fi
  exit "$rc"
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
  if [ $NSPAWN = 1 ]; then kill_container; fi
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
  find /sys/fs/cgroup -maxdepth 2 -type d \( -name payload -o -name supervisor \) \
    -exec find {} -depth -type d -exec rmdir {} \; \; 2>/dev/null || true
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

report() { # report DIST NAME STATUS [DETAILS-FILE...]
  local dist=$1 name=$2 status=$3; shift 3
  if [ "$status" = PASS ]; then
    t_pass "$dist/$name"
  else
    t_fail "$dist/$name" "$status"
    local f
    for f in "$@"; do
      [ -s "$f" ] || continue
      echo "    --- $(basename "$f")"
      sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\r//g; s/^/    /' "$f"
    done
  fi
}

console_of() { case "$1" in *-arm64) echo ttyAMA0;; *) echo ttyS0;; esac; }
qemu_args() { # qemu_args DIST IMAGE-DIR WORK-DIR [EXTRA-KERNEL-ARGS]
  local dist=$1 img=$2 w=$3 extra=${4:-} machine
  # arm64: the `virt` board; -nic none, or it wants a NIC option ROM (efi-virtio.rom).
  # shellcheck disable=SC2054 # the commas are QEMU's option syntax, not array separators
  case "$dist" in
    *-arm64) machine=(qemu-system-aarch64 -M virt -nic none);;
    *) machine=(qemu-system-x86_64);;
  esac
  # shellcheck disable=SC2054 # the commas are QEMU's option syntax, not array separators
  local args=(
    "${machine[@]}" -name "oneiric-vm" -accel tcg -cpu max
    -smp "$SMP" -m "$MEM" -nodefaults -no-user-config -display none -monitor none
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img"
    -append "root=LABEL=oneiric-root rw console=$(console_of "$dist") apparmor=1 security=apparmor panic=-1 loglevel=4 net.ifnames=0$extra"
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
  local dist=$1 plan plan_a img t0 boot rc deadline left serial
  plan=$(plan_for "$dist")
  [ -n "$plan" ] || { log "$dist: no scenario applies; no guest booted"; return; }
  t0=$SECONDS
  read -r -a plan_a <<<"$plan"
  local deb=$DEB old_deb=$OLD_DEB pkg_err=$PKG_ERR
  case "$dist" in *-arm64) deb=$DEB_ARM64 old_deb=$OLD_DEB_ARM64 pkg_err=$PKG_ERR_ARM64;; esac
  if [ -n "$pkg_err" ] && needs deb "${plan_a[@]}"; then
    for s in $plan; do report "$dist" "$s" "$pkg_err"; done
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
  if [ -n "$deb" ]; then
    cp "$deb" "$W/payload/pkgs/oneiric.deb"
    [ -z "$old_deb" ] || cp "$old_deb" "$W/payload/pkgs/oneiric-old.deb"
  fi
  if [ -n "$RPM" ]; then
    cp "$RPM" "$W/payload/pkgs/oneiric.rpm"
    [ -z "$OLD_RPM" ] || cp "$OLD_RPM" "$W/payload/pkgs/oneiric-old.rpm"
  fi
  if [ -n "$REPOS_DIR" ]; then
    mkdir -p "$W/payload/repos"
    for t in r1 r2 r3 rot1 rot2 expired unsigned vmtest-system-provides.rpm; do cp -a "$REPOS_DIR/$t" "$W/payload/repos/"; done
  fi
  {
    echo "DIST=$dist"
    echo "PLAN='$plan'"
    echo "REBOOT_AT=$(reboot_at "${plan_a[@]}")"
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
    eval "set -- $(qemu_args "$dist" "$img" "$W" " systemd.mask=serial-getty@$(console_of "$dist").service")"
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
  # Which machine the scenarios ran on (suite.sh writes `uname -m` into every trace).
  local want_m=x86_64 got_m
  case "$dist" in *-arm64) want_m=aarch64;; esac
  got_m=$(sed -n 's/^vmtest: uname -m = //p' "$W/out/results/00-"*.log 2>/dev/null | head -n 1)
  if [ "$got_m" = "$want_m" ]; then report "$dist" "uname-m ($got_m)" PASS
  else report "$dist" uname-m "the trace says uname -m = '${got_m:-nothing}', expected $want_m"; fi
  # The client loops' figures (issue 18): requests, failures and the worst answer per event.
  if [ -s "$W/out/results/figures" ]; then
    while IFS= read -r l; do log "$dist client loop, $l"; done <"$W/out/results/figures"
  fi
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
    echo "  $(qemu_args "$dist" "$img" "$W") -serial mon:stdio"
    echo "  (results are in $W/out/results; in the guest: /var/lib/vmtest, journalctl -u oneiric)"
  else
    rm -rf "$W"
  fi
  W=""
}

T_ALL=$SECONDS
# Guests run in parallel, at most ONEIRIC_VM_JOBS at a time (default: the host's cores;
# each guest has one vCPU). nspawn runs share the host's cgroups without a host systemd:
# one at a time.
JOBS=${ONEIRIC_VM_JOBS:-$(nproc 2>/dev/null || echo 2)}
[ "${ONEIRIC_VM_PARALLEL:-1}" = 1 ] || JOBS=1
[ $NSPAWN = 0 ] || JOBS=1
if [ "$JOBS" -gt 1 ] && [ ${#DISTS[@]} -gt 1 ]; then
  CHILDREN=()
  running() { local c n=0; for c in "${CHILDREN[@]}"; do kill -0 "$c" 2>/dev/null && n=$((n + 1)); done; echo "$n"; }
  # Longest guest first: trixie also runs the rpm and dnf scenarios (~650 s against
  # ~430-520 s), so started last it ran alone on one core for ~9 min at the end.
  LAUNCH=()
  for d in "${DISTS[@]}"; do case "$d" in trixie*) LAUNCH=("$d" ${LAUNCH[@]+"${LAUNCH[@]}"}) ;; *) LAUNCH+=("$d") ;; esac; done
  for d in "${LAUNCH[@]}"; do
    while [ "$(running)" -ge "$JOBS" ]; do sleep 5; done
    (
      W=""; TPID=""
      trap 'stop_qemu; if [ -n "$W" ] && [ -d "$W" ] && [ "$KEEP" -eq 0 ]; then rm -rf "$W"; fi' EXIT
      trap 'exit 143' TERM INT HUP
      run_dist "$d"
    ) >"$RUNROOT/report-$d.$$" &
    CHILDREN+=($!)
    trap 'log "interrupted"; kill -TERM "${CHILDREN[@]}" 2>/dev/null; wait; rm -f "$RUNROOT"/report-*."$$"; exit 130' INT TERM HUP
  done
  wait "${CHILDREN[@]}" || true
  trap 'log "interrupted"; exit 130' INT TERM HUP
  for d in "${DISTS[@]}"; do
    f="$RUNROOT/report-$d.$$"
    t_absorb "$f"
    rm -f "$f"
  done
else
  for d in "${DISTS[@]}"; do run_dist "$d"; done
fi
log "all guests: $((SECONDS - T_ALL)) s"
t_finish
