# services.oneiric: the NixOS module.
#
# The service is derived from packaging/oneiric.service and its drop-in
# packaging/oneiric.service.d/*.conf (the ONE copy of the unit, also used by the .deb and the
# .rpm), plus its `#systemd>=N Directive=value` lines where this system's systemd is N or newer
# (as the package scripts' generated drop-in 50-systemd-N.conf): every directive is read from
# those files at evaluation time and only these values are substituted:
#   - /usr/bin/oneiric                         -> ${cfg.package}/bin/oneiric
#   - ExecStart's `--manifest /etc/oneiric/manifest.yaml` -> the URL or runtime path of
#     `manifest` when it is one (left out when `manifest = null`), `--refresh-interval 120`
#     -> `refreshInterval`, plus `extraArgs` at the end
#   - Environment= values LOG_LEVEL, ONEIRIC_LOG_FORMAT, PROMETHEUS_METRICS_PORT -> settings
#     logging.level, logging.format, http.port (by default `logLevel`, `logFormat`,
#     `metrics.port`, whose defaults are read from the unit)
# and only these directives are added (tests/nix/compare-unit.sh enforces both lists):
#   - Environment=ONEIRIC_STACK_ORDER=... when `stackOrder` is set
#   - EnvironmentFile=<environmentFile> when set (after the packaged optional one)
#   - LogLevelMax=debug when the log level is debug or trace (the drop-in caps it at info)
#   - X-Restart-Triggers (restartTriggers) naming the socket unit's content, so that a switch
#     that changes the socket restarts the service and, with it, the socket
# [Install] Also=oneiric.socket oneiric-admin.socket becomes the socket units themselves (NixOS
# links units by their wantedBy, not by `systemctl enable`).
#
# The socket unit (`socketActivation`, on by default) is packaging/oneiric.socket, read the same
# way; only its HTTP `ListenStream=` (ADDRESS:PORT) is substituted, from settings http.address and
# http.port, and left out when the HTTP listener is off (http.enabled false or `--no-http` in
# `extraArgs`), so that the socket and the settings always agree (oneiric refuses to start with
# a passed socket its settings do not describe). With `socketActivation = false` there is no
# socket unit and the service's Wants=/After=oneiric.socket and Also=oneiric.socket are left
# out; the service binds its own listeners (and keeps them in systemd's fd store).
# The administrators' socket packaging/oneiric-admin.socket (/run/oneiric/admin.sock, group
# oneiric-admin: changes from that group) is installed as it is, with the same switch: without
# socket activation there is none (the service cannot create it), and changes take root. The
# groups of packaging/oneiric.sysusers (`g` lines) become users.groups.
# Settings live where the packages put them, /etc/oneiric/<section>.yml, rendered from
# `settings` and checked with `oneiric check` at build time; the files are world-readable
# (their content is in the store anyway), so that the service reads them whether or not
# environment.etc's user/group are honoured (services.userborn ignores them).
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    types
    ;

  cfg = config.services.oneiric;
  format = pkgs.formats.yaml { };
  unitFile = import ./unit-file.nix { inherit lib; };

  # ---- the packaged files -------------------------------------------------------------------
  packaging = ../packaging;
  unitText = builtins.readFile (packaging + "/oneiric.service");
  # The drop-ins packaging/<unit>.d/*.conf of a unit, by file name.
  dropInsOf =
    unit:
    let
      dir = packaging + "/${unit}.d";
    in
    lib.optionalAttrs (builtins.pathExists dir) (
      lib.mapAttrs (n: _: {
        file = "packaging/${unit}.d/${n}";
        text = builtins.readFile (dir + "/${n}");
      }) (lib.filterAttrs (n: t: t == "regular" && lib.hasSuffix ".conf" n) (builtins.readDir dir))
    );
  # Parsed drop-ins, in the order systemd applies them (by name).
  parseDropIns =
    all: map (n: unitFile.parse all.${n}.file all.${n}.text) (lib.sort lib.lessThan (lib.attrNames all));
  packagedDropIns = dropInsOf "oneiric.service";
  # Directives newer than the oldest systemd the packages support are written in the unit as
  # `#systemd>=N Directive=value` ([Service]); the package scripts put them into the drop-in
  # oneiric.service.d/50-systemd-N.conf where systemd is N or newer. The same here, for this
  # system's systemd (always new enough on NixOS today), applied in the same name order.
  systemdVersion = config.systemd.package.version;
  newerLines = lib.filter (m: m != null) (
    map (builtins.match "#systemd>=([0-9]+) (.*)") (lib.splitString "\n" unitText)
  );
  newerDropIns = lib.listToAttrs (
    map (n: lib.nameValuePair "50-systemd-${n}.conf" {
      file = "packaging/oneiric.service (#systemd>=${n} lines)";
      text = "[Service]\n" + lib.concatMapStrings (m: builtins.elemAt m 1 + "\n") (
        lib.filter (m: builtins.head m == n) newerLines
      );
    }) (lib.filter (n: lib.versionAtLeast systemdVersion n) (lib.unique (map builtins.head newerLines)))
  );
  allDropIns = packagedDropIns // newerDropIns;
  packagedUnit = unitFile.withDropIns (unitFile.parse "packaging/oneiric.service" unitText) (
    parseDropIns allDropIns
  );

  # The socket unit: packaging/oneiric.socket and its drop-ins (none today). The package scripts
  # turn `#systemd>=N` lines into drop-ins for oneiric.service only, so here too.
  socketName = "oneiric.socket";
  packagedSocketUnit = unitFile.withDropIns (
    unitFile.parse "packaging/${socketName}" (builtins.readFile (packaging + "/${socketName}"))
  ) (parseDropIns (dropInsOf socketName));
  packagedSocket = packagedSocketUnit.Socket or (throw "packaging/${socketName} has no [Socket] section");
  # The administrators' socket: installed as packaged (no value of it depends on the settings).
  adminSocketName = "oneiric-admin.socket";
  packagedAdminSocketUnit = unitFile.withDropIns (
    unitFile.parse "packaging/${adminSocketName}" (builtins.readFile (packaging + "/${adminSocketName}"))
  ) (parseDropIns (dropInsOf adminSocketName));
  packagedAdminSocket =
    packagedAdminSocketUnit.Socket or (throw "packaging/${adminSocketName} has no [Socket] section");
  socketNames = [
    socketName
    adminSocketName
  ];
  packagedListen = asList (packagedSocket.ListenStream or [ ]);
  # A path (or an abstract name): the control socket; anything else is the HTTP listener.
  isPathListen = s: lib.hasPrefix "/" s || lib.hasPrefix "@" s;
  packagedHttpListens = builtins.filter (s: !isPathListen s) packagedListen;
  packagedHttpListen =
    if builtins.length packagedHttpListens == 1 then
      builtins.head packagedHttpListens
    else
      throw "packaging/${socketName}: expected one ListenStream= for the HTTP listener (ADDRESS:PORT) besides the control socket's path, found ${toString (builtins.length packagedHttpListens)}; nixos-module/default.nix substitutes it, update both";
  # [IPv6]:PORT or IPv4:PORT -> [ address port ].
  packagedHttpAddressPort =
    let
      m6 = builtins.match "[[]([^]]+)[]]:([0-9]+)" packagedHttpListen;
      m4 = builtins.match "([0-9.]+):([0-9]+)" packagedHttpListen;
    in
    if m6 != null then
      m6
    else if m4 != null then
      m4
    else
      throw "packaging/${socketName}: ListenStream=${packagedHttpListen} is not ADDRESS:PORT; nixos-module/default.nix substitutes it from http.address and http.port, update both";

  packagedService = packagedUnit.Service or (throw "packaging/oneiric.service has no [Service] section");
  asList = v: if builtins.isList v then v else [ v ];

  packagedEnv = lib.listToAttrs (
    map (
      kv:
      let
        m = builtins.match "([^=]+)=(.*)" kv;
      in
      lib.nameValuePair (builtins.elemAt m 0) (builtins.elemAt m 1)
    ) (asList (packagedService.Environment or [ ]))
  );
  packagedEnvValue =
    name:
    packagedEnv.${name}
      or (throw "packaging/oneiric.service: no Environment=${name}=...; nixos-module/default.nix substitutes it, update both");

  packagedExecStart = packagedService.ExecStart;
  manifestToken = "--manifest /etc/oneiric/manifest.yaml";
  refreshMatch = builtins.match "(.*--refresh-interval )([0-9]+)(.*)" packagedExecStart;
  packagedRefresh =
    if refreshMatch == null || !lib.hasInfix manifestToken packagedExecStart then
      throw "packaging/oneiric.service: ExecStart no longer has `${manifestToken}' and `--refresh-interval N'; nixos-module/default.nix substitutes them, update both"
    else
      lib.toInt (builtins.elemAt refreshMatch 1);

  user = packagedService.User or "oneiric";
  group = packagedService.Group or "oneiric";
  sysusers = builtins.filter (e: e.type == "u" && e.name == user) (
    unitFile.parseSysusers (builtins.readFile (packaging + "/oneiric.sysusers"))
  );
  sysuser =
    if sysusers == [ ] then
      throw "packaging/oneiric.sysusers declares no user ${user}"
    else
      builtins.head sysusers;
  # `g NAME -` lines: groups of their own (oneiric-admin), created empty as sysusers does.
  sysgroups = map (e: e.name) (
    builtins.filter (e: e.type == "g") (unitFile.parseSysusers (builtins.readFile (packaging + "/oneiric.sysusers")))
  );

  defaultManifest = packaging + "/etc/oneiric/manifest.yaml";
  apparmorProfileFile = ../apparmor/usr.bin.oneiric;

  # ---- what the options turn into --------------------------------------------------------
  bin = "${cfg.package}/bin/oneiric";

  manifestKind =
    if cfg.manifest == null then
      "none"
    else if builtins.isAttrs cfg.manifest && !(lib.isDerivation cfg.manifest) then
      "attrs"
    else if builtins.isString cfg.manifest && builtins.match "[a-zA-Z][a-zA-Z0-9+.-]*://.*" cfg.manifest != null then
      "url"
    else if builtins.isString cfg.manifest && !lib.hasPrefix builtins.storeDir cfg.manifest then
      "runtime-path"
    else
      "store-path";

  # The manifest file installed as /etc/oneiric/manifest.yaml (attrs and Nix paths only).
  manifestFile =
    {
      attrs = format.generate "oneiric-manifest.yaml" cfg.manifest;
      store-path = cfg.manifest;
    }
    .${manifestKind} or null;

  manifestArg =
    {
      none = "";
      url = "--manifest ${utils.escapeSystemdExecArg cfg.manifest}";
      runtime-path = "--manifest ${utils.escapeSystemdExecArg cfg.manifest}";
    }
    .${manifestKind} or manifestToken;

  execStart =
    let
      withInterval =
        builtins.elemAt refreshMatch 0 + toString cfg.refreshInterval + builtins.elemAt refreshMatch 2;
      withManifest = lib.replaceStrings [ manifestToken ] [ manifestArg ] withInterval;
      # `--manifest` left out: drop the double space it leaves.
      tidy = lib.replaceStrings [ "  " ] [ " " ] withManifest;
    in
    lib.concatStringsSep " " ([ (substitute tidy) ] ++ lib.optional (cfg.extraArgs != [ ]) (utils.escapeSystemdExecArgs cfg.extraArgs));

  # oneiric applies these variables over the settings files, so they are set from the
  # settings (whose defaults are logLevel, logFormat, metrics.port): the two always agree,
  # whichever of them is configured.
  envOverrides = {
    LOG_LEVEL = lib.toUpper cfg.settings.logging.level;
    ONEIRIC_LOG_FORMAT = cfg.settings.logging.format;
    PROMETHEUS_METRICS_PORT = toString cfg.settings.http.port;
  };
  stackOrderValue = lib.concatStringsSep "," (
    lib.mapAttrsToList (name: prio: "${name}:${toString prio}") cfg.stackOrder
  );
  environment =
    map (
      kv:
      let
        m = builtins.match "([^=]+)=(.*)" kv;
        name = builtins.elemAt m 0;
      in
      if envOverrides ? ${name} then "${name}=${envOverrides.${name}}" else kv
    ) (asList (packagedService.Environment or [ ]))
    ++ lib.optional (cfg.stackOrder != { }) "ONEIRIC_STACK_ORDER=${stackOrderValue}";
  # The same environment as KEY=VALUE pairs, for the build-time check.
  environmentAttrs = lib.listToAttrs (
    map (
      kv:
      let
        m = builtins.match "([^=]+)=(.*)" kv;
      in
      lib.nameValuePair (builtins.elemAt m 0) (builtins.elemAt m 1)
    ) environment
  );

  substitute = v: if builtins.isString v then lib.replaceStrings [ "/usr/bin/oneiric" ] [ bin ] v else v;

  serviceConfig =
    lib.mapAttrs (_: v: if builtins.isList v then map substitute v else substitute v) packagedService
    // {
      ExecStart = execStart;
      Environment = environment;
      EnvironmentFile = asList (packagedService.EnvironmentFile or [ ]) ++ lib.optional (cfg.environmentFile != null) (toString cfg.environmentFile);
    }
    // lib.optionalAttrs (builtins.elem (lib.toLower cfg.settings.logging.level) [ "debug" "trace" ]) {
      LogLevelMax = asList (packagedService.LogLevelMax or [ ]) ++ [ "debug" ];
    }
    ;

  words = v: builtins.filter (w: builtins.isString w && w != "") (builtins.split "[[:space:]]+" v);
  substituteAll = lib.mapAttrs (_: v: if builtins.isList v then map substitute v else substitute v);

  # [Unit] of the service. Without the socket units, they are dropped from the dependency lists
  # (Wants=oneiric.socket, After=oneiric-admin.socket, ...); a line naming nothing else is left
  # out, not written empty (an empty value would reset the list).
  dependencyKeys = [
    "Wants"
    "Requires"
    "Requisite"
    "BindsTo"
    "PartOf"
    "Upholds"
    "After"
    "Before"
  ];
  withoutSocketDeps =
    section:
    lib.filterAttrs (_: v: v != [ ]) (
      lib.mapAttrs (
        key: v:
        if builtins.elem key dependencyKeys then
          lib.concatMap (
            value:
            let
              kept = builtins.filter (w: !builtins.elem w socketNames) (words value);
            in
            if value == "" then
              [ value ]
            else
              lib.optional (kept != [ ]) (lib.concatStringsSep " " kept)
          ) (asList v)
        else
          v
      ) section
    );
  serviceUnitConfig = substituteAll (
    if cfg.socketActivation then
      packagedUnit.Unit or { }
    else
      withoutSocketDeps (packagedUnit.Unit or { })
  );

  install = packagedUnit.Install or { };
  # Also=: units `systemctl enable` takes along. NixOS enables by wantedBy, not [Install], so each
  # must be a unit this module installs itself: the socket units (or, without them, none).
  installAlso = lib.concatMap words (asList (install.Also or [ ]));
  unknownInstallKeys =
    lib.subtractLists [ "WantedBy" "RequiredBy" "UpheldBy" "Also" ] (lib.attrNames install)
    ++ map (u: "Also=${u}") (lib.subtractLists socketNames installAlso);

  # ---- the socket unit ------------------------------------------------------------------------
  httpAddress = cfg.settings.http.address;
  httpServed = cfg.settings.http.enabled && !builtins.elem "--no-http" cfg.extraArgs;
  # ListenStream= takes addresses, not host names: [IPv6]:PORT or IPv4:PORT.
  isIPv4 = a: builtins.match "[0-9]{1,3}([.][0-9]{1,3}){3}" a != null;
  isIPv6 = a: builtins.match "[0-9a-fA-F:.]*:[0-9a-fA-F:.]*" a != null;
  httpListen =
    if isIPv6 httpAddress then
      "[${httpAddress}]:${toString cfg.settings.http.port}"
    else
      "${httpAddress}:${toString cfg.settings.http.port}";
  # The packaged list, in its order (the order of the passed descriptors), with the HTTP entry
  # substituted, or left out when the service serves no HTTP.
  listenStreams = lib.concatMap (
    s: if isPathListen s then [ s ] else lib.optional httpServed httpListen
  ) packagedListen;
  httpPortArgs = builtins.filter (a: a == "--http-port" || lib.hasPrefix "--http-port=" a) cfg.extraArgs;

  # A packaged .socket file as a NixOS socket unit: its [Unit] and [Socket] as they are but for
  # ListenStream=, which is given; its [Install] keys mapped, any other one an assertion.
  socketUnitFrom = name: packagedUnit: packagedSocketSection: listenStreams: rec {
    install = packagedUnit.Install or { };
    unknownInstallKeys = lib.subtractLists [ "WantedBy" "RequiredBy" "UpheldBy" ] (
      lib.attrNames install
    );
    assertion = {
      assertion = !cfg.socketActivation || unknownInstallKeys == [ ];
      message = "packaging/${name}: [Install] ${toString unknownInstallKeys} not mapped by nixos-module/default.nix";
    };
    unit = {
      unitConfig = substituteAll (packagedUnit.Unit or { });
      socketConfig = substituteAll (removeAttrs packagedSocketSection [ "ListenStream" ]);
      inherit listenStreams;
    };
    declared = unit // {
      wantedBy = asList (install.WantedBy or [ ]);
      requiredBy = mkIf (install ? RequiredBy) (asList install.RequiredBy);
      upheldBy = mkIf (install ? UpheldBy) (asList install.UpheldBy);
    };
  };
  controlSocket = socketUnitFrom socketName packagedSocketUnit packagedSocket listenStreams;
  adminSocket = socketUnitFrom adminSocketName packagedAdminSocketUnit packagedAdminSocket (
    asList (packagedAdminSocket.ListenStream or [ ])
  );

  # ---- settings ---------------------------------------------------------------------------
  sections = [
    "app"
    "adapters"
    "services"
    "tasks"
    "events"
    "workflows"
    "actions"
    "remote"
    "logging"
    "http"
    "lifecycle"
  ];
  sectionDescriptions = {
    app = "`app.yml`: name, environment, debug.";
    adapters = "`adapters.yml`: selections, provider_settings, options, candidates of the adapter domain.";
    services = "`services.yml`: the service domain.";
    tasks = "`tasks.yml`: the task domain.";
    events = "`events.yml`: the event domain.";
    workflows = "`workflows.yml`: the workflow domain.";
    actions = "`actions.yml`: the action domain.";
    remote = "`remote.yml`: remote manifest fetching and signature policy (allow_http, signature_required, ...).";
    logging = "`logging.yml`: level and format.";
    http = "`http.yml`: the HTTP listener (metrics and API).";
    lifecycle = "`lifecycle.yml`: activation, health and cleanup timeouts.";
  };
  declaredSectionOptions = {
    logging = {
      level = mkOption {
        type = types.str;
        default = cfg.logLevel;
        defaultText = lib.literalExpression "config.services.oneiric.logLevel";
        description = "Log level.";
      };
      format = mkOption {
        type = types.str;
        default = cfg.logFormat;
        defaultText = lib.literalExpression "config.services.oneiric.logFormat";
        description = "Log format.";
      };
    };
    http = {
      enabled = mkOption {
        type = types.bool;
        default = cfg.metrics.enable;
        defaultText = lib.literalExpression "config.services.oneiric.metrics.enable";
        description = "Whether the HTTP listener runs.";
      };
      address = mkOption {
        type = types.str;
        default = cfg.metrics.address;
        defaultText = lib.literalExpression "config.services.oneiric.metrics.address";
        description = "Listen address of the HTTP listener.";
      };
      port = mkOption {
        type = types.port;
        default = cfg.metrics.port;
        defaultText = lib.literalExpression "config.services.oneiric.metrics.port";
        description = "Listen port of the HTTP listener.";
      };
    };
    remote = {
      trusted_public_keys = mkOption {
        type = types.listOf types.str;
        default = cfg.trustedPublicKeys;
        defaultText = lib.literalExpression "config.services.oneiric.trustedPublicKeys";
        description = "Base64 ed25519 public keys whose manifest signatures are trusted.";
      };
    };
  };
  sectionOption =
    name:
    mkOption {
      type = types.submodule {
        freeformType = format.type;
        options = declaredSectionOptions.${name} or { };
      };
      default = { };
      description = sectionDescriptions.${name};
    };

  # Empty sections write no file (every file is optional).
  settingsFiles = lib.filterAttrs (_: v: v != { }) (lib.genAttrs sections (s: cfg.settings.${s}));

  etcFiles =
    lib.mapAttrs' (s: _: lib.nameValuePair "${s}.yml" null) settingsFiles
    // lib.optionalAttrs (manifestFile != null) { "manifest.yaml" = null; };

  # See environment.etc below: readable without relying on user or group names.
  etcFileMode = "0644";

  canRunPackage = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;

  # /etc/oneiric as the service sees it, checked with the service's environment.
  settingsDir =
    pkgs.runCommand "oneiric-settings"
      {
        nativeBuildInputs = lib.optional (cfg.checkConfig && canRunPackage) cfg.package;
        preferLocalBuild = true;
      }
      (
        ''
          mkdir -p $out
        ''
        + lib.concatStrings (
          lib.mapAttrsToList (s: v: ''
            cp ${format.generate "oneiric-${s}.yml" v} $out/${s}.yml
          '') settingsFiles
        )
        + lib.optionalString (manifestFile != null) ''
          cp ${manifestFile} $out/manifest.yaml
        ''
        + lib.optionalString (cfg.checkConfig && canRunPackage) ''
          mkdir -p "$TMPDIR/state" "$TMPDIR/cache" "$TMPDIR/run"
          env ${lib.escapeShellArgs (lib.mapAttrsToList (n: v: "${n}=${v}") (environmentAttrs // { ONEIRIC_CONFIG = "${placeholder "out"}"; }))} \
            oneiric check --config $out \
              --state-dir "$TMPDIR/state" --cache-dir "$TMPDIR/cache" --runtime-dir "$TMPDIR/run"
        ''
      );

  # ---- AppArmor -----------------------------------------------------------------------------
  apparmorProfileText =
    let
      text = lib.replaceStrings [ "/usr/bin/oneiric" ] [ bin ] (builtins.readFile apparmorProfileFile);
      closureRules = pkgs.apparmorRulesFromClosure { name = "oneiric"; } [ cfg.package ];
      anchor = "include if exists <local/";
    in
    # The packaged profiles allow the FHS paths of the .deb; on NixOS the binary and its
    # libraries live in the store: add read/map rules for the package's closure to each
    # profile (the service's and the CLI's), before its local include.
    if !(lib.hasInfix anchor text) then
      throw "apparmor/usr.bin.oneiric: no `include if exists <local/...>' line to anchor the NixOS store rules"
    else
      lib.replaceStrings [ anchor ] [ "include \"${closureRules}\"\n  ${anchor}" ] text;
  # The profile the service runs under: the packaged unit's AppArmorProfile= (passed on as it
  # is: its `-` makes it do nothing where AppArmor is off), which must be one of the profiles
  # in apparmor/usr.bin.oneiric.
  apparmorProfileName =
    let
      name = lib.removePrefix "-" (packagedService.AppArmorProfile or "");
    in
    if name != "" && lib.hasInfix "\nprofile ${name} {" (builtins.readFile apparmorProfileFile) then
      name
    else
      throw "packaging/oneiric.service: AppArmorProfile=${name} is not a profile of apparmor/usr.bin.oneiric";
in
{
  options.services.oneiric = {
    enable = mkEnableOption "Oneiric, the universal resolution layer (`oneiric orchestrate`)";

    package = lib.mkPackageOption pkgs "oneiric" { };

    settings = mkOption {
      type = types.submodule { options = lib.genAttrs sections sectionOption; };
      default = { };
      example = lib.literalExpression ''
        {
          app.environment = "staging";
          adapters.selections.cache = "redis";
          adapters.provider_settings.redis.url = "redis://127.0.0.1:6379";
          remote.signature_required = true;
        }
      '';
      description = ''
        Oneiric settings, one attribute set per section. Each non-empty section is written to
        `/etc/oneiric/<section>.yml` (the layout of the .deb and .rpm) with `pkgs.formats.yaml`,
        and the whole directory is validated with `oneiric check` at build time.
        Unknown fields are errors (in `oneiric check`, hence in the build).
        Secrets do not belong here (they would land in the Nix store): use `environmentFile`.
      '';
    };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to validate the generated settings and manifest with `oneiric check` at build
        time, with the service's environment, so that a bad configuration fails the build
        rather than the boot. Skipped when cross-compiling.
      '';
    };

    manifest = mkOption {
      type = types.nullOr (
        types.oneOf [
          format.type
          types.path
          types.str
        ]
      );
      default = defaultManifest;
      defaultText = lib.literalMD "`packaging/etc/oneiric/manifest.yaml`, the packages' default manifest";
      example = "https://manifests.example.org/oneiric/manifest.yaml";
      description = ''
        The manifest given to `oneiric orchestrate --manifest`:
        - Nix attributes: rendered to YAML, checked at build time and installed as
          `/etc/oneiric/manifest.yaml`;
        - a path in the Nix store (e.g. `./manifest.yaml`): checked at build time and installed
          as `/etc/oneiric/manifest.yaml`;
        - a URL (`https://...`; `http://` needs `settings.remote.allow_http`): fetched every
          `refreshInterval` seconds, the last good copy kept in the cache directory;
        - an absolute path outside the store (a string): managed outside Nix, read at run time;
        - `null`: no `--manifest` (settings and local candidates only).
      '';
    };

    refreshInterval = mkOption {
      type = types.ints.positive;
      default = packagedRefresh;
      defaultText = lib.literalMD "the packaged unit's `--refresh-interval` (120)";
      description = "Seconds between refreshes of the manifest (`orchestrate --refresh-interval`).";
    };

    stackOrder = mkOption {
      type = types.attrsOf types.int;
      default = { };
      example = {
        production = 100;
        staging = 50;
        default = 0;
      };
      description = "Inferred priority of named layers, passed as `ONEIRIC_STACK_ORDER`.";
    };

    trustedPublicKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=" ];
      description = ''
        Base64 raw 32-byte ed25519 public keys trusted for manifest signatures
        (`settings.remote.trusted_public_keys`). Require signatures with
        `settings.remote.signature_required = true`.
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/oneiric.env";
      description = ''
        A file of `KEY=value` lines read by systemd (never copied into the Nix store), for
        secrets such as remote auth tokens, or any `ONEIRIC_<SECTION>__<FIELD>` override.
        Added after the packaged optional `/etc/oneiric/environment`, so it wins.
      '';
    };

    logLevel = mkOption {
      type = types.enum [
        "trace"
        "debug"
        "info"
        "warning"
        "error"
      ];
      default = lib.toLower (packagedEnvValue "LOG_LEVEL");
      defaultText = lib.literalMD "the packaged unit's `LOG_LEVEL` (`info`)";
      description = ''
        Log level (`LOG_LEVEL` and `settings.logging.level`). `debug` and `trace` also raise
        the unit's journald `LogLevelMax=` to `debug`.
      '';
    };

    logFormat = mkOption {
      type = types.enum [
        "json"
        "text"
      ];
      default = packagedEnvValue "ONEIRIC_LOG_FORMAT";
      defaultText = lib.literalMD "the packaged unit's `ONEIRIC_LOG_FORMAT` (`json`)";
      description = "Log format when not logging to journald natively (`ONEIRIC_LOG_FORMAT`).";
    };

    metrics = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Whether to serve `/metrics` and the HTTP API (`settings.http.enabled`).";
      };
      address = mkOption {
        type = types.str;
        default = builtins.head packagedHttpAddressPort;
        defaultText = lib.literalMD "the address of packaging/oneiric.socket's HTTP `ListenStream=` (`127.0.0.1`)";
        description = ''
          Listen address of the metrics and API listener (`settings.http.address`). With
          `socketActivation`, an IP address (oneiric.socket's `ListenStream=` takes no host name).
        '';
      };
      port = mkOption {
        type = types.port;
        default = lib.toInt (packagedEnvValue "PROMETHEUS_METRICS_PORT");
        defaultText = lib.literalMD "the packaged unit's `PROMETHEUS_METRICS_PORT` (9090)";
        description = "Listen port (`PROMETHEUS_METRICS_PORT` and `settings.http.port`).";
      };
    };

    socketActivation = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to install the socket unit `oneiric.socket` (packaging/oneiric.socket, as the
        .deb and .rpm do): systemd holds the HTTP listener and the control socket
        (`/run/oneiric/control.sock`) and passes them to the service, so that clients wait in the
        backlog instead of being refused while the service restarts, crashes or is upgraded, and
        a connection starts a stopped service again. Its HTTP `ListenStream=` follows
        `settings.http.address` and `settings.http.port` (by default `metrics.address`,
        `metrics.port`) and is left out when the HTTP listener is off (`metrics.enable = false`,
        or `--no-http` in `extraArgs`), so the two always agree.

        When false, there is no socket unit, and the service's `Wants=`/`After=oneiric.socket`
        and `Also=oneiric.socket` are left out: the service binds its own listeners (and keeps
        them in systemd's file descriptor store across `systemctl restart`).
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open `metrics.port` in the firewall.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "--no-http" ];
      description = ''
        Extra arguments appended to `oneiric orchestrate`. With `socketActivation`, `--no-http`
        also leaves the HTTP `ListenStream=` out of `oneiric.socket`, and `--http-port` is refused
        (the socket could not follow it): use `metrics.port`.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = unknownInstallKeys == [ ];
        message = "packaging/oneiric.service: [Install] ${toString unknownInstallKeys} not mapped by nixos-module/default.nix";
      }
      controlSocket.assertion
      adminSocket.assertion
      {
        assertion = !cfg.socketActivation || !httpServed || isIPv4 httpAddress || isIPv6 httpAddress;
        message = "services.oneiric.settings.http.address = \"${httpAddress}\" is not an IP address, which oneiric.socket's ListenStream= needs: use one (e.g. 127.0.0.1, ::1, 0.0.0.0, ::) or set services.oneiric.socketActivation = false";
      }
      {
        assertion = !cfg.socketActivation || httpPortArgs == [ ];
        message = "services.oneiric.extraArgs has ${toString httpPortArgs}, which oneiric.socket cannot follow (oneiric would refuse the socket's port): set services.oneiric.metrics.port (or settings.http.port) instead, or socketActivation = false";
      }
      {
        assertion = manifestKind != "url" || lib.hasPrefix "https://" cfg.manifest || cfg.settings.remote.allow_http or false;
        message = "services.oneiric.manifest is a plain http:// URL: set services.oneiric.settings.remote.allow_http = true to allow it";
      }
      {
        # The service's own rule (http.address off loopback), told at evaluation time.
        assertion =
          !(cfg.settings.http.enabled or true)
          || cfg.settings.http.address == "::1"
          || lib.hasPrefix "127." cfg.settings.http.address
          || (
            (cfg.settings.http.allow_non_loopback or false)
            && (cfg.settings.http.bearer_token_file or null) != null
          );
        message = "services.oneiric.settings.http.address = \"${cfg.settings.http.address}\" is not a loopback address, so /metrics and /v1/* would answer whoever can reach it: set services.oneiric.settings.http.allow_non_loopback = true and settings.http.bearer_token_file (a file the service can read, e.g. through serviceConfig.LoadCredential), or listen on 127.0.0.1";
      }
    ];
    warnings = lib.optional (
      cfg.openFirewall
      && builtins.elem cfg.settings.http.address [
        "127.0.0.1"
        "::1"
      ]
    ) "services.oneiric.openFirewall is set but the HTTP listener is on ${cfg.settings.http.address}: nothing outside the host can connect";

    environment.systemPackages = [ cfg.package ];

    users.users.${user} = {
      isSystemUser = true;
      inherit group;
      description = sysuser.gecos;
      home = sysuser.home;
    };
    users.groups = lib.genAttrs ([ group ] ++ sysgroups) (_: { });

    # /etc/oneiric: the files the packages install, as copies readable by everyone (0644
    # root:root). Their content is in the Nix store, which every user can read, so the packages'
    # 0640 root:oneiric would hide nothing here; and it would depend on the activation
    # resolving group `oneiric`, which it does not with services.userborn (or an etc overlay),
    # where environment.etc.<name>.user/group are ignored and the service could not read its
    # settings. Secrets never come here: environmentFile is read by systemd, not copied.
    environment.etc = lib.mapAttrs' (
      name: _:
      lib.nameValuePair "oneiric/${name}" {
        source = "${settingsDir}/${name}";
        mode = etcFileMode;
      }
    ) etcFiles;

    # The packaged tmpfiles.d entry, applied at boot and on every switch
    # (systemd-tmpfiles-resetup), after the users exist (also with userborn): /etc/oneiric
    # 0750 root:oneiric and its *.yml/*.yaml 0640 root:oneiric, as in the packages. Before it
    # ran, or where it cannot change /etc (immutable etc overlay), the directory is 0755 and
    # the files 0644: readable by the service either way.
    systemd.tmpfiles.packages = [ cfg.package ];

    systemd.services.oneiric = {
      unitConfig = serviceUnitConfig;
      inherit serviceConfig;
      wantedBy = asList (install.WantedBy or [ ]);
      requiredBy = mkIf (install ? RequiredBy) (asList install.RequiredBy);
      upheldBy = mkIf (install ? UpheldBy) (asList install.UpheldBy);
      # A settings or manifest change is applied with `oneiric reload` (ExecReload=) by
      # switch-to-configuration; a changed unit (package, arguments) restarts the service.
      reloadTriggers = [ settingsDir ];
      # switch-to-configuration leaves a changed .socket unit alone, but stops a changed
      # service together with its socket unit and starts the socket again (then the active
      # targets, which start the service). So a change of the socket (the address, the port,
      # http.enabled, which otherwise only reload the service) counts as a change of the service:
      # both are reopened together and never disagree.
      restartTriggers = lib.optional cfg.socketActivation (
        builtins.hashString "sha256" (
          builtins.toJSON (map (s: s.unit // { inherit (s) install; }) [ controlSocket adminSocket ])
        )
      );
    };

    # packaging/oneiric.socket, with the HTTP ListenStream= from the settings.
    # packaging/oneiric-admin.socket as it is.
    systemd.sockets = mkIf cfg.socketActivation {
      oneiric = controlSocket.declared;
      oneiric-admin = adminSocket.declared;
    };

    security.apparmor.policies.oneiric = mkIf config.security.apparmor.enable {
      state = "enforce";
      # Fails the evaluation when the unit names a profile the file does not have.
      profile = builtins.seq apparmorProfileName apparmorProfileText;
    };

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall cfg.settings.http.port;
  };
}
