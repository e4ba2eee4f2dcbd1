# shellcheck shell=bash
# vm: needs=rpm boot=2 order=30 dists=trixie
# 9. The .rpm with Fedora/RHEL semantics, in a Debian 13 guest with Debian's rpm
#    (--nodeps: the rpm database here knows no system package):
#    - install (previous build) under Fedora's default preset (`disable *`): user and
#      group created, the preset applied (disabled), not started;
#    - the admin's step: `systemctl enable --now oneiric`;
#    - upgrade to this build: try-restart (restarted exactly once, still running and
#      enabled);
#    - erase: stopped, disabled, files gone;
#    - a preset that enables it: the first install enables it, still without starting.
rpmf=$PKGS/oneiric.rpm
old=$PKGS/oneiric-old.rpm
[ -f "$rpmf" ] || fail "no .rpm given to the guest (RPM=... or packaging/build-rpm.sh)"
[ -f "$old" ] || fail "no lower-version .rpm in the payload (run.sh make_old_rpm)"
newv=$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$rpmf"); oldv=$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$old")
[ "$(rpm --eval "%{lua: print(rpm.vercmp('$oldv', '$newv'))}" 2>/dev/null)" = -1 ] ||
  note "cannot compare $oldv and $newv with rpm's lua; relying on run.sh's '~' suffix"
wants=/etc/systemd/system/multi-user.target.wants/oneiric.service
presets=/etc/systemd/system-preset
# Clean slate: no .deb, and no user left by it (Debian keeps system users on purge).
if dpkg-query -W oneiric >/dev/null 2>&1; then apt-get purge -y oneiric </dev/null; fi
userdel oneiric 2>/dev/null || true
groupdel oneiric 2>/dev/null || true
systemctl daemon-reload
mkdir -p "$presets"
trap 'rm -f "$presets/99-default-disable.preset" "$presets/50-oneiric.preset"' EXIT
echo 'disable *' >"$presets/99-default-disable.preset"

# Install (the previous build): preset applied, not started.
rpm -i --nodeps "$old" || fail "rpm -i --nodeps $old exited $?"
expect_eq "installed version" "$(rpm -q --qf '%{VERSION}-%{RELEASE}' oneiric)" "$oldv"
getent passwd oneiric || fail "%pre did not create user oneiric"
getent group oneiric || fail "%pre did not create group oneiric"
expect_eq "is-enabled after install under 'disable *'" "$(systemctl is-enabled oneiric || true)" disabled
sleep 3
expect_eq "ActiveState after install (the package must not start it)" "$(prop ActiveState)" inactive
[ -d /run/oneiric ] || fail "%post did not apply tmpfiles (/run/oneiric missing)"
expect_eq "owner/mode of /etc/oneiric" "$(stat -c '%U:%G %a' /etc/oneiric)" "root:oneiric 750"
expect_eq "owner/mode of /etc/oneiric/environment" "$(stat -c '%U:%G %a' /etc/oneiric/environment)" "root:root 600"

# The admin's step.
systemctl enable --now oneiric || fail "systemctl enable --now oneiric exited $?"
wait_healthy 90
expect_eq "is-enabled" "$(systemctl is-enabled oneiric)" enabled
expect_eq "user of the main process" "$(ps -o user= -p "$(main_pid)" | tr -d ' ')" oneiric
expect_eq "/v1/resolve/adapter/cache" "$(http_get /v1/resolve/adapter/cache | json_field provider)" memory

# Upgrade: the old package's %postun try-restarts the running service, once.
pid=$(main_pid)
t0=$(date +%s)
sleep 1
rpm -U --nodeps "$rpmf" || fail "rpm -U --nodeps $rpmf exited $?"
expect_eq "installed version after upgrade" "$(rpm -q --qf '%{VERSION}-%{RELEASE}' oneiric)" "$newv"
wait_healthy 90
[ "$(main_pid)" != "$pid" ] || fail "service not restarted by the upgrade (MainPID $pid unchanged)"
j=$(unit_journal_since "$t0")
echo "$j"
expect_eq "starts of oneiric.service during the upgrade" "$(grep -c ' Started ' <<<"$j" || true)" 1
expect_eq "stops of oneiric.service during the upgrade" "$(grep -c ' Stopping ' <<<"$j" || true)" 1
expect_eq "is-enabled after upgrade" "$(systemctl is-enabled oneiric)" enabled
expect_eq "NRestarts (try-restart is not a failure restart)" "$(prop NRestarts)" 0
oneiric --version
files=$(rpm -ql oneiric)

# Erase: stopped and disabled, files gone.
rpm -e oneiric || fail "rpm -e exited $?"
if is_active; then fail "service still active after rpm -e"; fi
if pgrep -x oneiric; then fail "oneiric process left after rpm -e"; fi
if rpm -q oneiric; then fail "package still in the rpm database"; fi
if [ -e "$wants" ] || [ -L "$wants" ]; then fail "still enabled after rpm -e ($wants)"; fi
left=""
for f in $files; do
  case "$f" in /etc/*) continue;; esac     # %config(noreplace) may be kept as .rpmsave
  if [ -f "$f" ] || [ -L "$f" ]; then left="$left $f"; fi
done
[ -z "$left" ] || fail "files left after rpm -e:$left"
if systemctl cat oneiric.service >/dev/null 2>&1; then fail "unit still known after rpm -e"; fi
[ ! -e /var/log/oneiric ] || fail "/var/log/oneiric exists (nothing should create it)"

# The presets decide: with `enable oneiric.service` the first install enables it (not started).
echo 'enable oneiric.service' >"$presets/50-oneiric.preset"
rpm -i --nodeps "$rpmf" || fail "rpm -i --nodeps $rpmf (enable preset) exited $?"
expect_eq "is-enabled after install under 'enable oneiric.service'" "$(systemctl is-enabled oneiric)" enabled
sleep 3
expect_eq "ActiveState after install with an enable preset" "$(prop ActiveState)" inactive
rpm -e oneiric || fail "second rpm -e exited $?"
if [ -e "$wants" ] || [ -L "$wants" ]; then fail "still enabled after the second rpm -e"; fi
trap - EXIT
rm -f "$presets/99-default-disable.preset" "$presets/50-oneiric.preset"
