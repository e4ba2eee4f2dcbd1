# shellcheck shell=bash
# vm: needs=deb boot=1 order=10 dists=all
# 1. Install the .deb: user and group, directory owners and modes, unit enabled and
#    active, READY reached, `systemctl status` shows the service's STATUS= line.
deb=$(deb_path)
getent passwd oneiric >/dev/null && fail "user oneiric exists before the install (image not clean)"
apt-get install -y "$deb" </dev/null || fail "apt-get install $deb failed"
expect_eq "installed version" "$(installed_version)" "$(dpkg-deb -f "$deb" Version)"

# User and group: system user, no login shell, home the state directory.
pw=$(getent passwd oneiric) || fail "no user oneiric after install"
IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
[ "$uid" -lt 1000 ] || fail "oneiric is not a system user (uid $uid)"
gr=$(getent group oneiric) || fail "no group oneiric after install"
expect_eq "primary group of oneiric" "$gid" "$(cut -d: -f3 <<<"$gr")"
expect_eq "home of oneiric" "$home" /var/lib/oneiric
case "$shell" in /usr/sbin/nologin|/sbin/nologin|/bin/false|/usr/bin/false) ;; *) fail "oneiric has a login shell: $shell";; esac

# Enabled and active; Type=notify and active means READY=1 arrived.
expect_eq "is-enabled" "$(systemctl is-enabled oneiric)" enabled
expect_eq "unit Type" "$(prop Type)" notify
wait_healthy 90
expect_eq "SubState" "$(prop SubState)" running
pid=$(main_pid)
expect_eq "user of the main process" "$(ps -o user= -p "$pid" | tr -d ' ')" oneiric
journalctl -u oneiric -o cat --no-pager | grep "^Started .*Oneiric" >/dev/null || fail "no 'Started ...' (READY) in the unit's journal"
[ -n "$(journalctl -u oneiric ONEIRIC_EVENT=ready -o cat --no-pager)" ] || fail "no ONEIRIC_EVENT=ready in the journal"

# STATUS= line as systemd sees it, and in `systemctl status`.
st=$(prop StatusText)
[ -n "$st" ] || fail "StatusText is empty: the service sent no STATUS="
systemctl status oneiric --no-pager -l -n 0 >"$STATE/status.txt" || true
cat "$STATE/status.txt"
grep -qF "Status: \"${st:0:40}" "$STATE/status.txt" || fail "systemctl status does not show the Status: line ($st)"

# Directories: owner oneiric:oneiric, mode as the unit declares (*DirectoryMode=).
check_dir() { # check_dir PATH OWNER MODE
  [ -d "$1" ] || fail "$1 missing"
  local got; got=$(stat -c '%U:%G %a' "$1")
  [ "${got% *}" = "$2" ] || fail "$1 owned by ${got% *}, expected $2"
  [ $((8#${got#* })) -eq $((8#$3)) ] || fail "$1 has mode ${got#* }, expected $3"
}
check_dir /var/lib/oneiric oneiric:oneiric "$(prop StateDirectoryMode)"
check_dir /var/cache/oneiric oneiric:oneiric "$(prop CacheDirectoryMode)"
# No logs directory: the service logs to journald only.
[ ! -e /var/log/oneiric ] || fail "/var/log/oneiric exists; nothing should create it"
check_dir /run/oneiric oneiric:oneiric "$(prop RuntimeDirectoryMode)"
check_dir /etc/oneiric root:oneiric 0750
# Settings 0640 root:oneiric, environment file 0600 root:root (packaging's tmpfiles.d).
n=0
for f in /etc/oneiric/*.yml /etc/oneiric/*.yaml; do
  [ -e "$f" ] || continue
  expect_eq "owner/mode of $f" "$(stat -c '%U:%G %a' "$f")" "root:oneiric 640"
  n=$((n + 1))
done
[ $n -gt 0 ] || fail "no settings files in /etc/oneiric"
[ -f "$MANIFEST" ] || fail "$MANIFEST missing"
expect_eq "owner/mode of /etc/oneiric/environment" "$(stat -c '%U:%G %a' /etc/oneiric/environment)" "root:root 600"
expect_eq "owner/mode of /usr/bin/oneiric" "$(stat -c '%U:%G %a' /usr/bin/oneiric)" "root:root 755"
# Directives newer than this systemd stay out of its sight: "#systemd>=N" lines of the
# unit become oneiric.service.d/50-systemd-N.conf only where systemd >= N, and the
# unit's load produced no "Unknown key"/"Unknown lvalue" warning (issue 16).
sd=$(systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
while read -r n; do
  f=/usr/lib/systemd/system/oneiric.service.d/50-systemd-$n.conf
  if [ "$sd" -ge "$n" ]; then [ -f "$f" ] || fail "systemd $sd: no $f"
  else [ ! -e "$f" ] || fail "systemd $sd < $n but $f exists"; fi
done < <(sed -n 's/^#systemd>=\([0-9]*\) .*/\1/p' /usr/lib/systemd/system/oneiric.service | sort -u)
if [ "$sd" -ge 248 ]; then expect_eq "PrivateIPC (systemd $sd)" "$(prop PrivateIPC)" yes; fi
unknown=$(journalctl -b --no-pager -o cat | grep -E 'oneiric\.service.*(Unknown key|Unknown lvalue|Unknown section)' || true)
[ -z "$unknown" ] || fail "systemd $sd warns about the unit: $(head -n 3 <<<"$unknown" | tr '\n' ' ')"
note "systemd $sd: drop-ins $(find /usr/lib/systemd/system/oneiric.service.d/ -name '*.conf' -printf '%f ')"
# The control socket exists in the runtime directory.
[ -S /run/oneiric/control.sock ] || fail "no /run/oneiric/control.sock"

snapshot_config
