# With security.apparmor.enable, the packaged profile (apparmor/usr.bin.oneiric, with the store
# path of the binary and read rules for the package's closure) is loaded in enforce mode and the
# service runs confined by it, without denials, and still serves, reloads and answers the CLI.
{ lib, oneiricModule }:
{
  name = "oneiric-apparmor";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ oneiricModule ];
      security.apparmor.enable = true;
      services.oneiric.enable = true;
      environment.systemPackages = [ pkgs.curl ];
    };

  testScript = ''
    machine.wait_for_unit("apparmor.service")
    machine.wait_for_unit("oneiric.service")

    with subtest("the profile is loaded in enforce mode and confines the service"):
        machine.succeed("aa-status --json | grep -q oneiric")
        pid = machine.succeed("systemctl show -P MainPID oneiric").strip()
        label = machine.succeed(f"cat /proc/{pid}/attr/current").strip()
        assert label == "oneiric-service (enforce)", label

    with subtest("confined, it still serves, reloads and answers"):
        machine.wait_until_succeeds("curl -sf http://127.0.0.1:9090/healthz")
        machine.succeed("curl -sf http://127.0.0.1:9090/v1/resolve/adapter/cache | grep -q memory")
        machine.succeed("systemctl reload oneiric")
        machine.succeed("oneiric check")

    with subtest("no AppArmor denials for the profile"):
        denials = machine.execute("journalctl -k -b --no-pager | grep 'apparmor=\"DENIED\"' | grep 'profile=\"oneiric'")[1]
        assert denials.strip() == "", denials
  '';
}
