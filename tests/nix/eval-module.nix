# Evaluates nixos-module/ with nixpkgs' `lib` alone (no nixpkgs, no NixOS): the NixOS options
# the module sets are declared here as stubs, `pkgs` and `utils` are stubbed with what the module
# calls. Used by tests/nix/run.sh, which needs only a checkout of `lib` (e.g. nix-community's
# nixpkgs.lib repository) and Nix >= 2.18.
#
#   nix-instantiate --eval --strict --json tests/nix/eval-module.nix \
#     --arg lib 'import /path/to/nixpkgs.lib/lib' --arg scenario '"default"'
#   ... --argstr system aarch64-linux --arg flake true   # through the flake, for aarch64-linux
#
# The result is { unit; socketUnit; expectations; ... }: `unit` and `socketUnit` are the service
# and the socket rendered the way NixOS writes them (compared with packaging/oneiric.service and
# packaging/oneiric.socket by tests/nix/compare-unit.sh; `socketUnit` is "" without one),
# `installedUnits` the oneiric units the configuration has, and `expectations` a list of
# { name; ok; detail; } checked by run.sh.
{
  lib,
  scenario ? "default",
  repo ? ../..,
  # The platform the configuration is for (pkgs.stdenv.hostPlatform.system).
  system ? "x86_64-linux",
  # Evaluate the module through the flake (nixosModules.default) instead of nixos-module/.
  flake ? false,
}:
let
  inherit (lib) mkOption types;

  unitFile = import (repo + "/nixos-module/unit-file.nix") { inherit lib; };
  # nixpkgs' package set for `system`, stubbed (tests/nix/stub-pkgs.nix); pkgs.oneiric is the
  # real package.nix evaluated with a buildRustPackage that returns its arguments.
  pkgs = import (repo + "/tests/nix/stub-pkgs.nix") { inherit lib system; };

  # The flake's outputs with that stub as nixpkgs (for `flake = true`: the module as
  # nixosModules.default, which picks packages.<system>.default itself).
  flakeOutputs = (import (repo + "/flake.nix")).outputs {
    self = flakeOutputs;
    nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
        s: import (repo + "/tests/nix/stub-pkgs.nix") { inherit lib; system = s; }
      );
    };
  };
  # A key, so that a VM test node importing it again does not declare it twice.
  moduleUnderTest =
    if flake then
      {
        key = "oneiric-flake-nixosModules-default";
        imports = [ flakeOutputs.nixosModules.default ];
      }
    else
      repo + "/nixos-module";

  # nixos/lib/utils.nix
  utils = rec {
    escapeSystemdExecArg =
      arg:
      let
        s =
          if builtins.isPath arg then
            "${arg}"
          else if builtins.isString arg then
            arg
          else
            toString arg;
      in
      lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON s);
    escapeSystemdExecArgs = lib.concatMapStringsSep " " escapeSystemdExecArg;
  };

  anyList = mkOption {
    type = types.listOf types.anything;
    default = [ ];
  };
  anyAttrs = mkOption {
    type = types.attrsOf types.anything;
    default = { };
  };

  # The NixOS options that nixos-module/ sets, declared loosely.
  stubs = {
    options = {
      assertions = anyList;
      warnings = anyList;
      environment.systemPackages = anyList;
      environment.etc = anyAttrs;
      users.users = anyAttrs;
      users.groups = anyAttrs;
      systemd.tmpfiles.packages = anyList;
      systemd.package = mkOption {
        type = types.anything;
        default = pkgs.systemd;
      };
      systemd.services = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options = {
              unitConfig = anyAttrs;
              serviceConfig = anyAttrs;
              wantedBy = anyList;
              requiredBy = anyList;
              upheldBy = anyList;
              reloadTriggers = anyList;
              restartTriggers = anyList;
            };
          }
        );
      };
      # nixos/lib/systemd-unit-options.nix: what socketToUnit renders.
      systemd.sockets = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options = {
              unitConfig = anyAttrs;
              socketConfig = anyAttrs;
              listenStreams = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              listenDatagrams = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
              wantedBy = anyList;
              requiredBy = anyList;
              upheldBy = anyList;
            };
          }
        );
      };
      # nixos/modules/services/system/userborn.nix: with it, environment.etc.<name>.user and
      # .group are not applied (users do not exist yet when /etc is set up).
      services.userborn.enable = mkOption {
        type = types.bool;
        default = false;
      };
      security.apparmor.enable = mkOption {
        type = types.bool;
        default = false;
      };
      security.apparmor.policies = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options = {
              state = mkOption {
                type = types.enum [
                  "disable"
                  "complain"
                  "enforce"
                ];
                default = "enforce";
              };
              profile = mkOption { type = types.lines; };
            };
          }
        );
      };
      networking.firewall.allowedTCPPorts = anyList;
      # Set by the VM tests' nodes.
      systemd.tmpfiles.rules = anyList;
      specialisation = anyAttrs;
    };
  };

  hasApparmorProfile = builtins.pathExists (repo + "/apparmor/usr.bin.oneiric");

  scenarios = {
    # Nothing but enable: must be the packaged unit exactly.
    default = {
      services.oneiric.enable = true;
    };
    # Every option that changes the unit.
    custom = {
      services.oneiric = {
        enable = true;
        manifest = "http://manifests.example.org:8080/manifest.json";
        refreshInterval = 5;
        extraArgs = [ "--no-http" ];
        environmentFile = "/run/secrets/oneiric.env";
        stackOrder = {
          production = 100;
          default = 0;
        };
        trustedPublicKeys = [ "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=" ];
        logLevel = "debug";
        logFormat = "text";
        metrics = {
          address = "0.0.0.0";
          port = 9191;
        };
        openFirewall = true;
        settings.remote = {
          allow_http = true;
          signature_required = true;
        };
        # Off loopback the service takes both (the module asserts it, as the service does).
        settings.http = {
          allow_non_loopback = true;
          bearer_token_file = "/run/credentials/oneiric.service/http-token";
        };
        settings.adapters.selections.cache = "redis";
      };
      security.apparmor.enable = hasApparmorProfile;
    };
    # A manifest given as Nix attributes, and a runtime path.
    attrs-manifest = {
      services.oneiric = {
        enable = true;
        manifest = {
          source = "nixos";
          entries = [ ];
        };
      };
    };
    runtime-manifest = {
      services.oneiric = {
        enable = true;
        manifest = "/var/lib/manifests/oneiric.yaml";
      };
    };
    no-manifest = {
      services.oneiric = {
        enable = true;
        manifest = null;
      };
    };
    # Settings set directly: the unit's variables (applied over the files) follow them.
    settings-direct = {
      services.oneiric = {
        enable = true;
        settings.http.port = 9292;
        settings.logging.level = "trace";
      };
    };
    # Users and groups made by userborn: environment.etc's user/group are ignored there, the
    # service must still read /etc/oneiric.
    userborn = {
      services.userborn.enable = true;
      services.oneiric = {
        enable = true;
        settings.adapters.selections.cache = "redis";
      };
    };
    # Must fail evaluation: a section oneiric does not have.
    bad-section = {
      services.oneiric = {
        enable = true;
        settings.nonsense.x = 1;
      };
    };
    # Must be refused: plain http without allow_http.
    http-refused = {
      services.oneiric = {
        enable = true;
        manifest = "http://manifests.example.org/manifest.json";
      };
    };
    # The socket's HTTP ListenStream= follows the settings: an IPv6 address, another port.
    socket-address = {
      services.oneiric = {
        enable = true;
        metrics = {
          address = "::";
          port = 9393;
        };
        # Off loopback the service (and the module's assertion) want both.
        settings.http = {
          allow_non_loopback = true;
          bearer_token_file = "/run/credentials/oneiric.service/http-token";
        };
      };
    };
    # No HTTP listener: the socket passes the control socket only.
    http-disabled = {
      services.oneiric = {
        enable = true;
        metrics.enable = false;
      };
    };
    # No socket unit: the service without its Wants=/After=/Also= on it (another loopback
    # address, which the socket would have followed too).
    no-socket = {
      services.oneiric = {
        enable = true;
        socketActivation = false;
        metrics.address = "127.0.0.2";
      };
    };
    # Must be refused: a host name in ListenStream=, and a port the socket cannot follow.
    socket-hostname-refused = {
      services.oneiric = {
        enable = true;
        metrics.address = "localhost";
      };
    };
    socket-http-port-refused = {
      services.oneiric = {
        enable = true;
        extraArgs = [
          "--http-port"
          "9999"
        ];
      };
    };
  };
  # Configurations that must fail an assertion, with a word its message must contain.
  refusals = {
    http-refused = {
      name = "plain http:// manifest refused without remote.allow_http";
      word = "allow_http";
    };
    socket-hostname-refused = {
      name = "a host name as http.address refused with socketActivation (ListenStream= takes addresses)";
      word = "socketActivation = false";
    };
    socket-http-port-refused = {
      name = "--http-port in extraArgs refused with socketActivation (the socket cannot follow it)";
      word = "metrics.port";
    };
  };

  # "vm:FILE:NODE": a node of a VM test in nixos-module/tests/ (its oneiric configuration
  # type-checks and its assertions hold; the VM itself needs nixpkgs).
  vmTestsDir = repo + "/nixos-module/tests";
  importVmTest =
    file:
    import (vmTestsDir + "/${file}") {
      inherit lib;
      oneiricModule = moduleUnderTest;
    };
  vmScenarios = lib.concatMap (
    file: map (node: "vm:${file}:${node}") (lib.attrNames (importVmTest file).nodes)
  ) (lib.attrNames (lib.filterAttrs (n: t: t == "regular" && lib.hasSuffix ".nix" n) (builtins.readDir vmTestsDir)));
  vmParts = lib.splitString ":" scenario;
  isVm = lib.hasPrefix "vm:" scenario;
  scenarioModule =
    if isVm then (importVmTest (builtins.elemAt vmParts 1)).nodes.${builtins.elemAt vmParts 2} else scenarios.${scenario};

  evalWith =
    m:
    (lib.evalModules {
      modules = [
        stubs
        moduleUnderTest
        m
      ];
      specialArgs = { inherit pkgs utils; };
    }).config;
  config = evalWith scenarioModule;
  # `enable` alone, to compare other configurations with.
  defaultConfig = evalWith scenarios.default;
  svc = config.systemd.services.oneiric;
  sock = config.systemd.sockets.oneiric or null;
  adminSock = config.systemd.sockets.oneiric-admin or null;
  cfg = config.services.oneiric;
  bin = "${pkgs.oneiric}/bin/oneiric";

  # As NixOS writes the units (nixos/lib/systemd-lib.nix: commonUnitText, serviceToUnit,
  # socketToUnit), less what NixOS adds on its own (X-Reload-Triggers, X-Restart-Triggers,
  # quoted Environment= from `path`).
  installSection = u: lib.optionalString (u.wantedBy != [ ]) "\n[Install]\nWantedBy=${toString u.wantedBy}\n";
  unit =
    unitFile.renderSection "Unit" svc.unitConfig
    + "\n"
    + unitFile.renderSection "Service" svc.serviceConfig
    + installSection svc;
  renderSocket =
    u:
    if u == null then
      ""
    else
      unitFile.renderSection "Unit" u.unitConfig
      + "\n"
      + unitFile.renderSection "Socket" u.socketConfig
      + lib.concatMapStrings (s: "ListenStream=${s}\n") u.listenStreams
      + lib.concatMapStrings (s: "ListenDatagram=${s}\n") u.listenDatagrams
      + installSection u;
  socketUnit = renderSocket sock;
  adminSocketUnit = renderSocket adminSock;
  installedUnits =
    map (n: "${n}.service") (lib.attrNames config.systemd.services)
    ++ map (n: "${n}.socket") (lib.attrNames config.systemd.sockets);

  # The packaged socket, parsed (the drift itself is compare-unit.sh's, with its own parser).
  packagedSocket = unitFile.parse "packaging/oneiric.socket" (builtins.readFile (repo + "/packaging/oneiric.socket"));
  packagedListen = asList packagedSocket.Socket.ListenStream;
  packagedAdminSocket = unitFile.parse "packaging/oneiric-admin.socket" (
    builtins.readFile (repo + "/packaging/oneiric-admin.socket")
  );
  controlListen = builtins.filter (lib.hasPrefix "/") packagedListen;
  mentionsSocket = v: lib.any (x: lib.hasInfix "oneiric.socket" (toString x) || lib.hasInfix "oneiric-admin.socket" (toString x)) (asList v);

  sc = svc.serviceConfig;
  asList = v: if builtins.isList v then v else [ v ];
  settingsDir = builtins.head svc.reloadTriggers;
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);

  expect = name: ok: detail: { inherit name ok detail; };
  etcNames = lib.attrNames config.environment.etc;
  oneiricEtc = lib.filterAttrs (n: _: lib.hasPrefix "oneiric/" n) config.environment.etc;
  # "0644" -> true: the last digit has the read bit.
  othersCanRead = mode: builtins.match "0?[0-7]?[0-7][0-7][4-7]" mode != null;

  common = [
    (expect "assertions hold" (failedAssertions == [ ]) (toString failedAssertions))
    (expect "user and group from packaging/oneiric.sysusers" (
      config.users.users ? oneiric
      && config.users.users.oneiric.group == "oneiric"
      && config.users.users.oneiric.isSystemUser
      && config.users.users.oneiric.home == "/var/lib/oneiric"
      && config.users.groups ? oneiric
    ) (builtins.toJSON config.users.users))
    (expect "group oneiric-admin from packaging/oneiric.sysusers (admin.sock's), with no members" (
      config.users.groups ? oneiric-admin && (config.users.groups.oneiric-admin.members or [ ]) == [ ]
    ) (builtins.toJSON config.users.groups))
    (expect "/etc/oneiric files readable by the service without their user/group (o+r copies)" (
      oneiricEtc != { }
      && lib.all (e: othersCanRead e.mode && !(e ? user) && !(e ? group)) (lib.attrValues oneiricEtc)
    ) (builtins.toJSON oneiricEtc))
    (expect "package for ${system}, which its meta.platforms lists" (
      cfg.package.system == system && builtins.elem system cfg.package.meta.platforms
    ) "${cfg.package.system or "?"}: ${toString (cfg.package.meta.platforms or [ ])}")
    (expect "settings are validated with `oneiric check` at build time" (
      lib.hasInfix "oneiric check --config $out" settingsDir.script
      && builtins.elem pkgs.oneiric settingsDir.env.nativeBuildInputs
    ) settingsDir.script)
    (expect "packaged tmpfiles.d entry installed" (builtins.elem pkgs.oneiric config.systemd.tmpfiles.packages) "")
  ];
  # Every configuration with socketActivation (the default).
  socketCommon = [
    (expect "oneiric.socket installed, wanted by what packaging/oneiric.socket's [Install] says" (
      sock != null && sock.wantedBy == asList packagedSocket.Install.WantedBy
    ) (builtins.toJSON (if sock == null then null else sock.wantedBy)))
    (expect "service wants and is ordered after oneiric.socket (as packaged)" (
      builtins.elem "oneiric.socket" (asList svc.unitConfig.Wants) && builtins.elem "oneiric.socket" (asList svc.unitConfig.After)
    ) (builtins.toJSON svc.unitConfig))
    (expect "socket's [Socket] as packaged, but for the HTTP ListenStream=" (
      sock.socketConfig == removeAttrs packagedSocket.Socket [ "ListenStream" ]
      && lib.all (c: builtins.elem c sock.listenStreams) controlListen
    ) (builtins.toJSON sock.socketConfig))
    (expect "oneiric-admin.socket installed as packaged (admin.sock, group oneiric-admin), wanted as its [Install] says" (
      adminSock != null
      && adminSock.wantedBy == asList packagedAdminSocket.Install.WantedBy
      && adminSock.socketConfig == removeAttrs packagedAdminSocket.Socket [ "ListenStream" ]
      && adminSock.listenStreams == asList packagedAdminSocket.Socket.ListenStream
      && adminSock.socketConfig.SocketGroup == "oneiric-admin"
    ) (builtins.toJSON adminSock))
    (expect "service wants and is ordered after oneiric-admin.socket (as packaged)" (
      builtins.elem "oneiric-admin.socket" (asList svc.unitConfig.Wants)
      && builtins.elem "oneiric-admin.socket" (asList svc.unitConfig.After)
    ) (builtins.toJSON svc.unitConfig))
    (expect "a change of the socket restarts the service (restartTriggers)" (
      builtins.length svc.restartTriggers == 1
    ) (builtins.toJSON svc.restartTriggers))
  ];

  perScenario = {
    default = [
      (expect "ExecStart as packaged, with the store binary" (
        sc.ExecStart == "${bin} orchestrate --manifest /etc/oneiric/manifest.yaml --refresh-interval 120"
      ) sc.ExecStart)
      (expect "default manifest installed as /etc/oneiric/manifest.yaml" (
        builtins.elem "oneiric/manifest.yaml" etcNames
        && lib.hasInfix "-manifest.yaml $out/manifest.yaml" (builtins.unsafeDiscardStringContext settingsDir.script)
      ) (toString etcNames))
      (expect "logging and http sections rendered from the options" (
        cfg.settings.logging.level == "info"
        && cfg.settings.http.port == 9090
        && cfg.settings.http.address == "127.0.0.1"
        && builtins.elem "oneiric/http.yml" etcNames
      ) (builtins.toJSON cfg.settings))
      (expect "no AppArmor policy unless security.apparmor.enable; the unit's AppArmorProfile=- as packaged (a no-op without AppArmor)" (
        config.security.apparmor.policies == { } && (sc.AppArmorProfile or "") == "-oneiric-service"
      ) (sc.AppArmorProfile or "no AppArmorProfile"))
      (expect "firewall closed by default" (config.networking.firewall.allowedTCPPorts == [ ]) "")
      (expect "socket's ListenStream= as packaged: the settings' address and port, then the control socket" (
        sock.listenStreams == packagedListen
        && builtins.elem "${cfg.settings.http.address}:${toString cfg.settings.http.port}" sock.listenStreams
      ) (builtins.toJSON sock.listenStreams))
      (expect "packaging agrees with itself: oneiric.socket's HTTP port is the unit's PROMETHEUS_METRICS_PORT" (
        builtins.elem "PROMETHEUS_METRICS_PORT=${toString cfg.metrics.port}" sc.Environment
        && builtins.elem "${cfg.metrics.address}:${toString cfg.metrics.port}" packagedListen
      ) "${builtins.toJSON packagedListen} ${builtins.toJSON sc.Environment}")
    ];
    custom = [
      (expect "ExecStart: URL, refresh interval, extra args" (
        sc.ExecStart
        == "${bin} orchestrate --manifest \"http://manifests.example.org:8080/manifest.json\" --refresh-interval 5 \"--no-http\""
      ) sc.ExecStart)
      (expect "no /etc/oneiric/manifest.yaml for a URL manifest" (!builtins.elem "oneiric/manifest.yaml" etcNames) (toString etcNames))
      (expect "Environment substituted from the options" (
        builtins.elem "PROMETHEUS_METRICS_PORT=9191" sc.Environment
        && builtins.elem "LOG_LEVEL=DEBUG" sc.Environment
        && builtins.elem "ONEIRIC_LOG_FORMAT=text" sc.Environment
        && builtins.elem "ONEIRIC_STACK_ORDER=default:0,production:100" sc.Environment
      ) (builtins.toJSON sc.Environment))
      (expect "environmentFile added after the packaged optional one" (
        asList sc.EnvironmentFile == [ "-/etc/oneiric/environment" "/run/secrets/oneiric.env" ]
      ) (builtins.toJSON sc.EnvironmentFile))
      (expect "LogLevelMax raised for debug" (lib.last (asList sc.LogLevelMax) == "debug") (builtins.toJSON sc.LogLevelMax))
      (expect "settings carry keys, metrics and remote policy" (
        cfg.settings.remote.trusted_public_keys == [ "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=" ]
        && cfg.settings.remote.allow_http
        && cfg.settings.http.port == 9191
        && cfg.settings.http.address == "0.0.0.0"
        && cfg.settings.logging.format == "text"
        && cfg.settings.adapters.selections.cache == "redis"
      ) (builtins.toJSON cfg.settings))
      (expect "the build-time check sees the service's environment" (
        lib.hasInfix "PROMETHEUS_METRICS_PORT=9191" settingsDir.script
      ) settingsDir.script)
      (expect "openFirewall opens metrics.port" (config.networking.firewall.allowedTCPPorts == [ 9191 ]) "")
      (expect "--no-http in extraArgs: the socket passes the control socket only" (
        sock.listenStreams == controlListen
      ) (builtins.toJSON sock.listenStreams))
    ]
    ++ lib.optionals hasApparmorProfile [
      (expect "AppArmor: policy loaded in enforce mode, service confined by its own profile, store rules in both profiles" (
        config.security.apparmor.policies.oneiric.state == "enforce"
        && sc.AppArmorProfile == "-oneiric-service"
        && lib.hasInfix "\nprofile oneiric-service {" config.security.apparmor.policies.oneiric.profile
        && lib.hasInfix bin config.security.apparmor.policies.oneiric.profile
        && !lib.hasInfix "/usr/bin/oneiric" config.security.apparmor.policies.oneiric.profile
        && builtins.length (lib.splitString "oneiric-apparmor-rules" config.security.apparmor.policies.oneiric.profile) == 3
      ) "${sc.AppArmorProfile or "no AppArmorProfile"}\n${config.security.apparmor.policies.oneiric.profile or ""}")
    ];
    attrs-manifest = [
      (expect "attrs manifest rendered and installed as /etc/oneiric/manifest.yaml" (
        builtins.elem "oneiric/manifest.yaml" etcNames
        && lib.hasInfix "oneiric-manifest.yaml $out/manifest.yaml" settingsDir.script
        && lib.hasInfix "--manifest /etc/oneiric/manifest.yaml" sc.ExecStart
      ) sc.ExecStart)
    ];
    runtime-manifest = [
      (expect "runtime manifest path passed as is, not copied" (
        lib.hasInfix "--manifest \"/var/lib/manifests/oneiric.yaml\"" sc.ExecStart
        && !builtins.elem "oneiric/manifest.yaml" etcNames
      ) sc.ExecStart)
    ];
    settings-direct = [
      (expect "Environment follows settings set directly" (
        builtins.elem "PROMETHEUS_METRICS_PORT=9292" sc.Environment
        && builtins.elem "LOG_LEVEL=TRACE" sc.Environment
        && lib.last (asList sc.LogLevelMax) == "debug"
      ) (builtins.toJSON sc.Environment))
      (expect "socket's HTTP ListenStream= follows settings.http.port set directly (127.0.0.1:9292)" (
        sock.listenStreams == map (s: if lib.hasPrefix "/" s then s else "127.0.0.1:9292") packagedListen
      ) (builtins.toJSON sock.listenStreams))
    ];
    # run.sh expects this one to fail evaluation, naming the option.
    bad-section = [ (expect "settings evaluate" (builtins.attrNames cfg.settings != [ ]) "") ];
    userborn = [
      (expect "userborn: every settings file readable by others (etc user/group ignored)" (
        config.services.userborn.enable
        && builtins.elem "oneiric/adapters.yml" etcNames
        && lib.all (e: othersCanRead e.mode) (lib.attrValues oneiricEtc)
      ) (builtins.toJSON oneiricEtc))
      (expect "userborn: the unit is the packaged one (ExecStart unchanged)" (
        sc.ExecStart == "${bin} orchestrate --manifest /etc/oneiric/manifest.yaml --refresh-interval 120"
      ) sc.ExecStart)
    ];
    no-manifest = [
      (expect "manifest = null drops --manifest" (
        sc.ExecStart == "${bin} orchestrate --refresh-interval 120"
      ) sc.ExecStart)
    ];
    socket-address = [
      (expect "socket's HTTP ListenStream= follows the settings ([::]:9393), in the packaged order" (
        sock.listenStreams == map (s: if lib.hasPrefix "/" s then s else "[::]:9393") packagedListen
        && builtins.elem "PROMETHEUS_METRICS_PORT=9393" sc.Environment
        && cfg.settings.http.address == "::"
      ) (builtins.toJSON sock.listenStreams))
      (expect "a socket change is a service restart: restartTriggers differ from the default's" (
        svc.restartTriggers != defaultConfig.systemd.services.oneiric.restartTriggers
      ) (builtins.toJSON svc.restartTriggers))
    ];
    http-disabled = [
      (expect "metrics.enable = false: no HTTP ListenStream=, the control socket only" (
        sock.listenStreams == controlListen && cfg.settings.http.enabled == false
      ) (builtins.toJSON sock.listenStreams))
    ];
  };
  # socketActivation = false.
  noSocket = [
    (expect "assertions hold without the socket" (failedAssertions == [ ]) (toString failedAssertions))
    (expect "no socket unit" (!(config.systemd.sockets ? oneiric)) (builtins.toJSON (lib.attrNames config.systemd.sockets)))
    (expect "service names oneiric.socket nowhere (no Wants=, After=), no restartTriggers" (
      !lib.any mentionsSocket (lib.attrValues svc.unitConfig) && svc.restartTriggers == [ ]
    ) (builtins.toJSON svc.unitConfig))
    (expect "[Service] as without the option; [Unit] as without it, less oneiric.socket and oneiric-admin.socket" (
      sc == defaultConfig.systemd.services.oneiric.serviceConfig
      && lib.attrNames svc.unitConfig == lib.attrNames defaultConfig.systemd.services.oneiric.unitConfig
      && lib.all (k: lib.subtractLists [ "oneiric.socket" "oneiric-admin.socket" ] (asList defaultConfig.systemd.services.oneiric.unitConfig.${k}) == asList svc.unitConfig.${k}) (lib.attrNames svc.unitConfig)
    ) (builtins.toJSON svc.unitConfig))
  ];

  expectations =
    if refusals ? ${scenario} then
      [
        (expect refusals.${scenario}.name (lib.any (
          m: lib.hasInfix refusals.${scenario}.word m
        ) failedAssertions) (toString failedAssertions))
      ]
    else if scenario == "no-socket" then
      common ++ noSocket
    else if isVm then
      [
        (expect "assertions hold" (failedAssertions == [ ]) (toString failedAssertions))
        (expect "node configuration evaluates" (
          builtins.isString (
            builtins.toJSON {
              services = lib.mapAttrs (_: s: s.serviceConfig) config.systemd.services;
              inherit (config.environment) etc;
              inherit (config.users) users groups;
              tmpfiles = config.systemd.tmpfiles.rules;
              ports = config.networking.firewall.allowedTCPPorts;
            }
          )
        ) "")
      ]
      ++ lib.optionals cfg.enable [
        (expect "oneiric runs the store binary" (lib.hasPrefix "${bin} orchestrate" sc.ExecStart) sc.ExecStart)
        (expect "package for ${system}" (cfg.package.system == system) (cfg.package.system or "?"))
        (expect "oneiric.socket and oneiric-admin.socket there exactly when socketActivation" (
          (sock != null) == cfg.socketActivation && (adminSock != null) == cfg.socketActivation
        ) (lib.boolToString cfg.socketActivation))
      ]
    else
      common ++ socketCommon ++ perScenario.${scenario};
  firstLine = s: builtins.head (lib.splitString "\n" s);
in
{
  inherit
    unit
    socketUnit
    adminSocketUnit
    expectations
    bin
    ;
  installedUnits = toString installedUnits;
  systemdVersion = config.systemd.package.version;
  vmScenarios = lib.concatMapStrings (s: s + "\n") vmScenarios;
  settings = cfg.settings;
  # One line per expectation, for run.sh: `PASS name` or `FAIL name: detail`.
  report = lib.concatMapStrings (
    e: if e.ok then "PASS ${e.name}\n" else "FAIL ${e.name}: ${firstLine (toString e.detail)}\n"
  ) expectations;
}
