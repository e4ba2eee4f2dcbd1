# Two machines: `server` signs manifests with `oneiric manifest sign` and serves them over
# plain HTTP; `client` runs oneiric with that URL, signatures required and the signer's public
# key trusted. The client picks up a new signed manifest within the refresh interval, and
# refuses a tampered one while it keeps serving the last good one.
{ lib, oneiricModule }:
let
  # Test key only: the ed25519 seed 0x01 x 32 of shared/testdata/signatures (key1).
  signingSeed = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
  publicKey = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";
  refreshInterval = 5;
  manifest = provider: ''
    source: vm-remote
    entries:
      - {domain: adapter, key: cache, provider: ${provider}, factory: "builtin:memory"}
  '';
in
{
  name = "oneiric-remote-manifest";

  nodes.server =
    { config, pkgs, ... }:
    {
      # Only for the `oneiric` CLI (manifest sign); the service stays off here.
      imports = [ oneiricModule ];
      environment.systemPackages = [ config.services.oneiric.package ];
      environment.etc."oneiric-test/signing.key".text = signingSeed;
      systemd.tmpfiles.rules = [ "d /srv/manifests 0755 root root -" ];
      systemd.services.manifest-http = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          ExecStart = "${pkgs.python3}/bin/python3 -m http.server 8080 --bind 0.0.0.0 --directory /srv/manifests";
          DynamicUser = true;
        };
      };
      networking.firewall.allowedTCPPorts = [ 8080 ];
    };

  nodes.client =
    { pkgs, ... }:
    {
      imports = [ oneiricModule ];
      services.oneiric = {
        enable = true;
        manifest = "http://server:8080/manifest.json";
        inherit refreshInterval;
        trustedPublicKeys = [ publicKey ];
        settings.remote = {
          allow_http = true;
          signature_required = true;
        };
      };
      environment.systemPackages = [ pkgs.curl ];
    };

  testScript = ''
    import json
    import time

    api = "http://127.0.0.1:9090"

    def publish(text, tamper=None):
        server.succeed(
            "cat > /tmp/manifest.yaml <<'EOF'\n" + text + "EOF\n"
            "oneiric manifest sign /tmp/manifest.yaml --key /etc/oneiric-test/signing.key -o /tmp/signed.json"
        )
        verify = "oneiric manifest verify /tmp/signed.json --trusted-key ${publicKey}"
        if tamper is None:
            server.succeed(verify)
        else:
            # Change the content after signing: the signature no longer matches (exit 7).
            server.succeed(f"sed -i 's/{tamper[0]}/{tamper[1]}/' /tmp/signed.json")
            server.fail(verify)
        server.succeed("install -m 0644 /tmp/signed.json /srv/manifests/manifest.json.new")
        server.succeed("mv /srv/manifests/manifest.json.new /srv/manifests/manifest.json")

    def provider():
        return json.dumps(json.loads(client.succeed(f"curl -sf {api}/v1/resolve/adapter/cache")))

    server.start()
    server.wait_for_unit("manifest-http.service")
    server.wait_for_open_port(8080)
    publish("""${manifest "alpha"}""")

    client.start()
    client.wait_for_unit("oneiric.service")
    client.wait_until_succeeds(f"curl -sf {api}/v1/resolve/adapter/cache | grep -q alpha", timeout=60)

    with subtest("a new signed manifest is picked up within the refresh interval"):
        publish("""${manifest "beta"}""")
        start = time.monotonic()
        client.wait_until_succeeds(
            f"curl -sf {api}/v1/resolve/adapter/cache | grep -q beta", timeout=${toString (refreshInterval * 3)}
        )
        print(f"picked up after {time.monotonic() - start:.1f}s (refresh interval ${toString refreshInterval}s)")

    with subtest("a tampered manifest is refused, the last good one keeps serving"):
        publish("""${manifest "gamma"}""", tamper=("gamma", "delta"))
        server.succeed("grep -q delta /srv/manifests/manifest.json")
        time.sleep(${toString (refreshInterval * 3)})
        assert "beta" in provider(), provider()
        assert "delta" not in provider()
        assert client.succeed("systemctl show -P ActiveState oneiric").strip() == "active"
        client.succeed("journalctl -u oneiric.service | grep -i signature")
  '';
}
