# shellcheck shell=bash
# vm: needs=rpm boot=2 order=30 dists=trixie
# 9. The .rpm in a Debian 13 guest with Debian's rpm (--nodeps: the rpm database here
#    knows no system package). Scriptlets create the user, enable and start the unit;
#    erase stops it and removes its files.
rpmf=$PKGS/oneiric.rpm
[ -f "$rpmf" ] || fail "no .rpm given to the guest (RPM=... or packaging/build-rpm.sh)"
# Clean slate: no .deb, and no user left by it (Debian keeps system users on purge).
if dpkg-query -W oneiric >/dev/null 2>&1; then apt-get purge -y oneiric </dev/null; fi
userdel oneiric 2>/dev/null || true
groupdel oneiric 2>/dev/null || true
systemctl daemon-reload

rpm -i --nodeps "$rpmf" || fail "rpm -i --nodeps exited $?"
rpm -q oneiric
getent passwd oneiric || fail "%pre/%post did not create user oneiric"
getent group oneiric || fail "%pre/%post did not create group oneiric"
expect_eq "is-enabled" "$(systemctl is-enabled oneiric)" enabled
wait_healthy 90
expect_eq "user of the main process" "$(ps -o user= -p "$(main_pid)" | tr -d ' ')" oneiric
oneiric --version
expect_eq "/v1/resolve/adapter/cache" "$(http_get /v1/resolve/adapter/cache | json_field provider)" memory
expect_eq "owner/mode of /etc/oneiric/environment" "$(stat -c '%U:%G %a' /etc/oneiric/environment)" "root:root 600"
files=$(rpm -ql oneiric)

rpm -e oneiric || fail "rpm -e exited $?"
if is_active; then fail "service still active after rpm -e"; fi
if pgrep -x oneiric; then fail "oneiric process left after rpm -e"; fi
if rpm -q oneiric; then fail "package still in the rpm database"; fi
left=""
for f in $files; do
  case "$f" in /etc/*) continue;; esac     # %config(noreplace) may be kept as .rpmsave
  if [ -f "$f" ] || [ -L "$f" ]; then left="$left $f"; fi
done
[ -z "$left" ] || fail "files left after rpm -e:$left"
if systemctl cat oneiric.service >/dev/null 2>&1; then fail "unit still known after rpm -e"; fi
true
