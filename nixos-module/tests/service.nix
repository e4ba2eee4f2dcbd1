# One machine: the service is up after boot (READY=1, status, watchdog armed), serves metrics
# and the HTTP API, reloads a good manifest, refuses a broken one while the old state keeps
# serving, is restarted by the watchdog when it hangs (SIGSTOP), and its sandbox scores at or
# below the packages' target in `systemd-analyze security`.
{ lib, oneiricModule }:
let
  manifest = provider: ''
    source: vm-test
    entries:
      - {domain: adapter, key: cache, provider: memory, factory: "builtin:memory"}
      - {domain: adapter, key: reload-probe, provider: ${provider}, factory: "builtin:noop"}
  '';
  # The packages' target (issue 5, packaging/oneiric.service): exposure at most 1.5.
  maxExposure = "1.5";
in
{
  name = "oneiric-service";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ oneiricModule ];
      services.oneiric = {
        enable = true;
        # A manifest outside the store, so that the test can change it and reload.
        manifest = "/var/lib/oneiric-test/manifest.yaml";
      };
      systemd.tmpfiles.rules = [
        "d /var/lib/oneiric-test 0755 root root -"
        "C /var/lib/oneiric-test/manifest.yaml 0644 root root - ${pkgs.writeText "manifest.yaml" (manifest "first")}"
      ];
      environment.systemPackages = [ pkgs.curl ];
    };

  testScript = ''
    import json
    import re

    api = "http://127.0.0.1:9090"

    def resolve(domain, key):
        return json.loads(machine.succeed(f"curl -sf {api}/v1/resolve/{domain}/{key}"))

    def write_manifest(text):
        machine.succeed(
            "cat > /var/lib/oneiric-test/manifest.yaml.new <<'EOF'\n" + text + "EOF\n"
            "mv /var/lib/oneiric-test/manifest.yaml.new /var/lib/oneiric-test/manifest.yaml"
        )

    machine.wait_for_unit("oneiric.service")

    with subtest("active after boot: Type=notify READY=1, status text, watchdog armed"):
        assert machine.succeed("systemctl show -P Type oneiric").strip() == "notify"
        assert machine.succeed("systemctl show -P ActiveState oneiric").strip() == "active"
        status = machine.succeed("systemctl show -P StatusText oneiric").strip()
        assert status != "", "no STATUS= sent"
        assert machine.succeed("systemctl show -P WatchdogUSec oneiric").strip() == "30s"
        assert machine.succeed("stat -c %U:%G /var/lib/oneiric").strip() == "oneiric:oneiric"
        machine.succeed("test -S /run/oneiric/control.sock")
        print(machine.succeed("stat -c '%a %U:%G %n' /etc/oneiric /etc/oneiric/*"))

    with subtest("metrics and HTTP API"):
        machine.wait_until_succeeds(f"curl -sf {api}/healthz")
        machine.succeed(f"curl -sf {api}/readyz")
        metrics = machine.succeed(f"curl -sf {api}/metrics")
        assert "oneiric_" in metrics, metrics[:2000]
        machine.succeed(f"curl -sf {api}/v1/status")
        assert "memory" in json.dumps(resolve("adapter", "cache"))
        assert "first" in json.dumps(resolve("adapter", "reload-probe"))
        machine.succeed(f"curl -sf {api}/v1/explain/adapter/cache")

    with subtest("reload with a good manifest"):
        write_manifest("""${manifest "second"}""")
        machine.succeed("systemctl reload oneiric")
        assert "second" in json.dumps(resolve("adapter", "reload-probe"))

    with subtest("reload with a broken manifest fails, the old state keeps serving"):
        write_manifest("source: broken\nentries: [ {domain: adapter, key: x\n")
        machine.fail("systemctl reload oneiric")
        assert machine.succeed("systemctl show -P ActiveState oneiric").strip() == "active"
        assert "second" in json.dumps(resolve("adapter", "reload-probe"))
        write_manifest("""${manifest "second"}""")
        machine.succeed("systemctl reload oneiric")

    with subtest("the watchdog restarts a hung service"):
        pid = machine.succeed("systemctl show -P MainPID oneiric").strip()
        restarts = int(machine.succeed("systemctl show -P NRestarts oneiric").strip())
        machine.succeed(f"kill -STOP {pid}")
        # WatchdogSec=30s, then SIGABRT/SIGKILL, then RestartSec=10s.
        machine.wait_until_succeeds(
            f"test $(systemctl show -P NRestarts oneiric) -gt {restarts}", timeout=240
        )
        machine.wait_for_unit("oneiric.service")
        assert machine.succeed("systemctl show -P MainPID oneiric").strip() != pid
        machine.succeed("journalctl -u oneiric.service | grep -i 'watchdog timeout'")
        machine.wait_until_succeeds(f"curl -sf {api}/healthz")

    with subtest("systemd-analyze security at or below ${maxExposure}"):
        out = machine.succeed("systemd-analyze security oneiric.service")
        m = re.search(r"Overall exposure level for oneiric\.service: ([0-9.]+)", out)
        assert m, out[-2000:]
        print(f"exposure {m.group(1)}")
        assert float(m.group(1)) <= ${maxExposure}, out
  '';
}
