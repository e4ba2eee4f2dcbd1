{
  description = "Oneiric: universal resolution layer (daemon, CLI and NixOS module)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      # One VM test per file in nixos-module/tests/, picked up automatically.
      vmTestFiles = lib.filterAttrs (name: type: type == "regular" && lib.hasSuffix ".nix" name) (
        builtins.readDir ./nixos-module/tests
      );
    in
    {
      overlays.default = final: _prev: {
        oneiric = final.callPackage ./nixos-module/package.nix { };
      };

      packages = forAllSystems (
        _system: pkgs: rec {
          oneiric = pkgs.callPackage ./nixos-module/package.nix { };
          default = oneiric;
        }
      );

      nixosModules.default =
        { pkgs, ... }:
        {
          imports = [ ./nixos-module ];
          services.oneiric.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };

      devShells = forAllSystems (
        system: pkgs: {
          default = pkgs.mkShell {
            inputsFrom = [ self.packages.${system}.default ];
            packages =
              with pkgs;
              [
                cargo
                rustc
                clippy
                rustfmt
                rust-analyzer
                cargo-deb
                qemu
                nixfmt
              ]
              ++ lib.optional (pkgs ? cargo-generate-rpm) pkgs.cargo-generate-rpm;
          };
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt);

      checks = forAllSystems (
        system: pkgs:
        let
          package = self.packages.${system}.default;

          # The module evaluated by NixOS itself (a container config: no boot loader, no
          # file systems), with nothing but `enable`: its unit must be the packaged one.
          nixos = lib.nixosSystem {
            inherit system;
            modules = [
              self.nixosModules.default
              {
                boot.isContainer = true;
                services.oneiric.enable = true;
                system.stateVersion = lib.trivial.release;
              }
            ];
          };
          units = nixos.config.systemd.units;
          # NixOS writes [Install] WantedBy= into the text when wantedBy is set; add it otherwise.
          rendered =
            name: u:
            let
              text = units.${name}.text;
            in
            if lib.hasInfix "[Install]" text || u.wantedBy == [ ] then
              text
            else
              text + "\n[Install]\nWantedBy=${toString u.wantedBy}\n";
          # The oneiric units NixOS has: [Install] Also= may name only these (compare-unit.sh).
          installedUnits = lib.filter (n: builtins.match "oneiric(-admin)?[.].*" n != null) (
            lib.attrNames units
          );
        in
        {
          inherit package;

          cargo-test = package.overrideAttrs { doCheck = true; };

          # Evaluates the whole NixOS system (a failed assertion or a type error fails here),
          # then compares the units NixOS writes with packaging/oneiric.service,
          # packaging/oneiric.socket and packaging/oneiric-admin.socket.
          module-eval =
            pkgs.runCommand "oneiric-module-eval"
              {
                nativeBuildInputs = [ pkgs.gawk ];
                toplevel = builtins.unsafeDiscardStringContext nixos.config.system.build.toplevel.drvPath;
                unit = rendered "oneiric.service" nixos.config.systemd.services.oneiric;
                socket = rendered "oneiric.socket" nixos.config.systemd.sockets.oneiric;
                adminSocket = rendered "oneiric-admin.socket" nixos.config.systemd.sockets.oneiric-admin;
                passAsFile = [
                  "unit"
                  "socket"
                  "adminSocket"
                ];
                ONEIRIC_INSTALLED = toString installedUnits;
              }
              ''
                echo "evaluated $toplevel"
                sh ${./tests/nix/compare-unit.sh} ${./packaging} "$unitPath" ${package}/bin/oneiric \
                  ${nixos.config.systemd.package.version}
                ONEIRIC_UNIT=oneiric.socket sh ${./tests/nix/compare-unit.sh} ${./packaging} "$socketPath" \
                  ${package}/bin/oneiric ${nixos.config.systemd.package.version}
                ONEIRIC_UNIT=oneiric-admin.socket sh ${./tests/nix/compare-unit.sh} ${./packaging} \
                  "$adminSocketPath" ${package}/bin/oneiric ${nixos.config.systemd.package.version}
                touch $out
              '';
        }
        // lib.mapAttrs' (
          file: _:
          lib.nameValuePair "vm-${lib.removeSuffix ".nix" file}" (
            pkgs.testers.runNixOSTest (
              import (./nixos-module/tests + "/${file}") {
                inherit lib;
                oneiricModule = self.nixosModules.default;
              }
            )
          )
        ) vmTestFiles
      );
    };
}
