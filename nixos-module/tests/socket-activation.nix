# One machine, socket activation (issue 18): oneiric.socket, installed by the module from
# packaging/oneiric.socket, holds the HTTP listener and the control socket. It is active after
# boot and the listeners are systemd's; a client loop loses no request across
# `systemctl restart oneiric`; a stopped service is started again by a client's connection; a
# switch to another port moves the socket together with the settings (the service comes back on
# its own, not only when a client connects); and with `socketActivation = false` there is no
# socket unit, the service binds its own listeners, and a restart still loses no request (they
# wait in systemd's fd store).
{ lib, oneiricModule }:
let
  # The packaged default (packaging/oneiric.socket, PROMETHEUS_METRICS_PORT) and another one.
  port = 9090;
  otherPort = 9191;
in
{
  name = "oneiric-socket-activation";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ oneiricModule ];
      services.oneiric.enable = true;
      environment.systemPackages = [
        pkgs.curl
        pkgs.iproute2
      ];
      # The README's local users: one administrator, one reader.
      users.users.alice = {
        isNormalUser = true;
        extraGroups = [ "oneiric-admin" ];
      };
      users.users.bob = {
        isNormalUser = true;
        extraGroups = [ "oneiric" ];
      };
      specialisation.port.configuration.services.oneiric.metrics.port = otherPort;
      specialisation.no-socket.configuration.services.oneiric.socketActivation = false;
    };

  testScript = ''
    import re

    activation_log = "listening on sockets passed by systemd: http from the socket unit, control from the socket unit"
    fd_store_log = "listening on sockets passed by systemd: http from the fd store, control from the fd store"

    def show(unit, prop):
        return machine.succeed(f"systemctl show -P {prop} {unit}").strip()

    def now():
        return machine.succeed("date +%s").strip()

    def journal_since(t0):
        return machine.succeed(f"journalctl --no-pager -o cat -u oneiric.service --since @{t0}")

    def held_by(port):
        # The processes holding the listening socket on PORT, as `ss -p` lists them.
        return machine.succeed(f"ss -ltnpH 'sport = :{port}'")

    def main_pid():
        return show("oneiric.service", "MainPID")

    # One curl process asking /v1/resolve/... over and over (URL globbing: sequential requests
    # on a kept-alive connection, a new one when the server closes it, as HTTP clients do), one
    # line per request: status code and seconds; failed requests as `curl: (N) ...` lines on
    # stderr (7: refused). As tests/vm/guest/lib.sh's load_start/load_stop.
    def load_start(name, port):
        f = f"/tmp/load-{name}"
        machine.succeed(f"rm -f {f}.*")
        machine.succeed(
            f"curl -sS --max-time 120 -o /dev/null -w '%{{http_code}} %{{time_total}}\\n' "
            f"'http://127.0.0.1:{port}/v1/resolve/adapter/cache?n=[1-999999999]' "
            f">{f}.out 2>{f}.err </dev/null & echo $! >{f}.pid"
        )
        # Answered before the event, or the event would be measured against a client starting.
        machine.wait_until_succeeds(f"grep -q '^200 ' {f}.out", timeout=30)

    def load_stop(name, event):
        f = f"/tmp/load-{name}"
        machine.succeed(f"kill $(cat {f}.pid) || true")
        machine.wait_until_succeeds(f"! kill -0 $(cat {f}.pid) 2>/dev/null", timeout=30)
        # A line cut off by the kill is not a request.
        done = [l for l in machine.succeed(f"cat {f}.out").splitlines() if re.fullmatch(r"[0-9]{3} [0-9.]+", l)]
        errors = [l for l in machine.succeed(f"cat {f}.err").splitlines() if l.startswith("curl: ")]
        failed = [l for l in done if not l.startswith("200 ")]
        refused = [l for l in errors if l.startswith("curl: (7)")]
        worst = max([float(l.split()[1]) for l in done] or [0.0])
        print(f"{event}: {len(done)} requests, {len(failed)} failed, {len(refused)} refused, worst {worst:.3f} s")
        assert done, f"{event}: the client loop made no request"
        assert not errors, f"{event}: {len(errors)} request(s) failed in the client loop ({len(refused)} refused): {errors[:5]}"
        assert not failed, f"{event}: {len(failed)} request(s) answered other than 200: {failed[:5]}"

    def restart_under_load(name, port):
        machine.succeed("systemctl reset-failed oneiric.service")
        pid = main_pid()
        load_start(name, port)
        # Returns once the new process sent READY=1 (Type=notify).
        machine.succeed("systemctl restart oneiric.service")
        new_pid = main_pid()
        assert new_pid not in ("0", pid), f"MainPID {pid} -> {new_pid}"
        machine.wait_until_succeeds(f"curl -sf http://127.0.0.1:{port}/readyz", timeout=60)
        machine.sleep(2)
        load_stop(name, f"systemctl restart oneiric ({name})")

    machine.wait_for_unit("oneiric.socket")
    machine.wait_for_unit("oneiric.service")
    # The booted system, which has the specialisations (a switch to one changes
    # /run/current-system).
    base = machine.succeed("readlink -f /run/current-system").strip()

    with subtest("oneiric.socket is active after boot and holds the listeners the service uses"):
        assert show("oneiric.socket", "ActiveState") == "active"
        assert show("oneiric.socket", "Triggers") == "oneiric.service"
        listen = show("oneiric.socket", "Listen")
        assert "127.0.0.1:${toString port}" in listen and "/run/oneiric/control.sock" in listen, listen
        # The listener is systemd's (pid 1) as well as the service's.
        held = held_by(${toString port})
        assert '"systemd",pid=1,' in held, held
        machine.succeed("test -S /run/oneiric/control.sock")
        mode = machine.succeed("stat -c '%a %U %G' /run/oneiric/control.sock").strip()
        assert mode == "660 oneiric oneiric", mode
        boot_log = machine.succeed("journalctl --no-pager -o cat -b -u oneiric.service")
        assert activation_log in boot_log, boot_log[-2000:]
        machine.wait_until_succeeds("curl -sf http://127.0.0.1:${toString port}/readyz")
        # ExecReload= (`oneiric reload`) talks to the service over the socket unit's control socket.
        machine.succeed("systemctl reload oneiric.service")

    with subtest("admin.sock: group oneiric-admin changes; group oneiric reads and is refused"):
        assert show("oneiric-admin.socket", "ActiveState") == "active"
        assert show("oneiric-admin.socket", "Triggers") == "oneiric.service"
        mode = machine.succeed("stat -c '%a %U %G' /run/oneiric/admin.sock").strip()
        assert mode == "660 root oneiric-admin", mode
        assert "admin from the socket unit" in boot_log, boot_log[-2000:]
        machine.succeed("su -s /bin/sh alice -c 'oneiric pause adapter cache'")
        machine.succeed("su -s /bin/sh alice -c 'oneiric pause adapter cache --resume'")
        rc, out = machine.execute("su -s /bin/sh bob -c 'oneiric pause adapter cache' 2>&1")
        assert rc == 6 and "permission denied" in out, (rc, out)
        machine.succeed("su -s /bin/sh bob -c 'oneiric status'")
        j = machine.succeed("journalctl --no-pager -o cat -u oneiric.service")
        assert "via admin.sock: ok" in j and "via control.sock refused" in j, j[-2000:]

    with subtest("a restart of the service while a client loop runs loses no request"):
        t0 = now()
        restart_under_load("restart", ${toString port})
        assert show("oneiric.socket", "ActiveState") == "active"
        assert activation_log in journal_since(t0), "the restarted service does not say it serves the socket unit's listeners"

    with subtest("stopped, the service is started again by a connection to the socket"):
        machine.succeed("systemctl reset-failed oneiric.service")
        machine.succeed("systemctl stop oneiric.service")
        assert show("oneiric.service", "ActiveState") == "inactive"
        assert show("oneiric.socket", "ActiveState") == "active"
        machine.succeed("test -S /run/oneiric/control.sock")
        code = machine.succeed(
            "curl -s -o /dev/null -w '%{http_code}' --max-time 90 http://127.0.0.1:${toString port}/healthz"
        ).strip()
        assert code == "200", f"GET /healthz to a stopped service (started by the socket): {code}"
        machine.wait_for_unit("oneiric.service")

    with subtest("a switch to another port moves the socket with the settings; the service comes back by itself"):
        t0 = now()
        machine.succeed(f"{base}/specialisation/port/bin/switch-to-configuration test")
        # Started by the switch (the active targets), before any client connected.
        machine.wait_for_unit("oneiric.service")
        assert show("oneiric.socket", "ActiveState") == "active"
        listen = show("oneiric.socket", "Listen")
        assert "127.0.0.1:${toString otherPort}" in listen, listen
        assert '"systemd",pid=1,' in held_by(${toString otherPort})
        assert held_by(${toString port}).strip() == "", held_by(${toString port})
        env = show("oneiric.service", "Environment")
        assert "PROMETHEUS_METRICS_PORT=${toString otherPort}" in env, env
        assert activation_log in journal_since(t0)
        machine.wait_until_succeeds("curl -sf http://127.0.0.1:${toString otherPort}/readyz")
        restart_under_load("restart-other-port", ${toString otherPort})

    with subtest("socketActivation = false: no socket unit; the service binds its own listeners and still loses no request across a restart"):
        machine.succeed(f"{base}/specialisation/no-socket/bin/switch-to-configuration test")
        machine.wait_for_unit("oneiric.service")
        assert show("oneiric.socket", "LoadState") == "not-found", show("oneiric.socket", "LoadState")
        assert show("oneiric.socket", "ActiveState") == "inactive"
        unit = machine.succeed("systemctl cat oneiric.service")
        assert "oneiric.socket" not in unit, unit
        machine.wait_until_succeeds("curl -sf http://127.0.0.1:${toString port}/readyz")
        assert '"oneiric",pid=' in held_by(${toString port}), held_by(${toString port})
        machine.succeed("test -S /run/oneiric/control.sock")
        t0 = now()
        restart_under_load("restart-fd-store", ${toString port})
        assert fd_store_log in journal_since(t0), "the restarted service does not say it got its listeners back from the fd store"
        machine.succeed("systemctl reload oneiric.service")
  '';
}
