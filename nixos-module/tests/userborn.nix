# With services.userborn (users and groups made by userborn, which does not apply
# environment.etc.<name>.user/group), the service still reads /etc/oneiric: it starts (its
# ExecStartPre `oneiric health --probe` reads the settings as user oneiric), serves, and a
# settings change reaches it with `systemctl reload` after a switch.
{ lib, oneiricModule }:
{
  name = "oneiric-userborn";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ oneiricModule ];
      services.userborn.enable = true;
      services.oneiric = {
        enable = true;
        settings.app.environment = "userborn-test";
      };
      environment.systemPackages = [ pkgs.curl ];
      specialisation.port.configuration.services.oneiric.metrics.port = 9191;
    };

  testScript = ''
    machine.wait_for_unit("userborn.service")
    machine.wait_for_unit("oneiric.service")

    with subtest("users from userborn; every file in /etc/oneiric readable by the service's user"):
        machine.succeed("getent passwd oneiric && getent group oneiric")
        print(machine.succeed("stat -c '%a %U:%G %n' /etc/oneiric /etc/oneiric/*"))
        files = machine.succeed("ls /etc/oneiric").split()
        assert "app.yml" in files and "manifest.yaml" in files, files
        for f in files:
            if f != "environment":
                machine.succeed(f"runuser -u oneiric -- cat /etc/oneiric/{f} >/dev/null")

    with subtest("the service serves with those settings"):
        machine.wait_until_succeeds("curl -sf http://127.0.0.1:9090/readyz")
        machine.succeed("curl -sf http://127.0.0.1:9090/v1/resolve/adapter/cache | grep -q memory")

    with subtest("after a switch the new settings are readable and served"):
        machine.succeed("/run/current-system/specialisation/port/bin/switch-to-configuration test")
        machine.succeed("runuser -u oneiric -- cat /etc/oneiric/http.yml | grep -q 9191")
        machine.wait_until_succeeds("curl -sf http://127.0.0.1:9191/readyz")
  '';
}
