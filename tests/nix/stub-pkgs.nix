# A stand-in for nixpkgs' package set for one system, with nixpkgs' `lib` alone: what the module,
# the package and the flake call, and nothing else (a missing attribute is an evaluation
# error naming it). Derivations are attribute sets that interpolate as a fake store path.
# `callPackage ./nixos-module/package.nix { }` evaluates the real package.nix with the real
# `lib` (meta, version, the source file set) and a buildRustPackage that returns its arguments;
# lib.fileset.toSource is captured (`src.__toSourceArgs`) so that nothing is copied.
#
#   import tests/nix/stub-pkgs.nix { inherit lib; system = "aarch64-linux"; }
{
  lib,
  system,
}:
let
  fakeStore = name: "${builtins.storeDir}/00000000000000000000000000000000-${name}";
  # A derivation stand-in: interpolates as its path, keeps its arguments for inspection.
  fakeDrv = name: attrs: attrs // {
    inherit name system;
    type = "derivation";
    outPath = fakeStore name;
    drvPath = fakeStore "${name}.drv";
    overrideAttrs = f: fakeDrv name (attrs // (if builtins.isFunction f then f attrs else f));
  };
  platform = {
    inherit system;
    isLinux = true;
    canExecute = p: p.system == system;
  };
  packageLib = lib // {
    fileset = lib.fileset // {
      toSource = args: { __toSourceArgs = args; };
    };
  };
  pkgs = {
    inherit lib;
    stdenv = {
      hostPlatform = platform;
      buildPlatform = platform;
    };
    callPackage =
      f: args:
      import f (
        {
          lib = packageLib;
          inherit (pkgs) stdenv;
          rustPlatform.buildRustPackage = attrs: fakeDrv "${attrs.pname}-${attrs.version}" attrs;
          installShellFiles = fakeDrv "install-shell-files" { };
          pkg-config = fakeDrv "pkg-config" { };
          sqlite = fakeDrv "sqlite" { };
        }
        // args
      );
    oneiric = pkgs.callPackage ../../nixos-module/package.nix { };
    formats.yaml =
      { }:
      {
        type = lib.types.anything;
        generate = name: value: fakeDrv name { inherit value; };
      };
    runCommand = name: env: script: fakeDrv name { inherit env script; };
    apparmorRulesFromClosure = args: paths: fakeDrv "${args.name or "closure"}-apparmor-rules" { };
    mkShell = attrs: fakeDrv "nix-shell" attrs;
    testers.runNixOSTest = test: fakeDrv "vm-test-run-${test.name}" { inherit test; };
    writeText = name: text: fakeDrv name { inherit text; };
    gawk = fakeDrv "gawk" { };
    # config.systemd.package (the module reads its version for the unit's #systemd>=N lines).
    systemd = fakeDrv "systemd-258" { version = "258"; };
    # Used by the VM tests' nodes and the dev shell.
    curl = fakeDrv "curl" { };
    iproute2 = fakeDrv "iproute2" { };
    python3 = fakeDrv "python3" { };
  }
  // lib.genAttrs [
    "cargo"
    "rustc"
    "clippy"
    "rustfmt"
    "rust-analyzer"
    "cargo-deb"
    "cargo-generate-rpm"
    "qemu"
    "nixfmt"
  ] (n: fakeDrv n { });
in
pkgs // { inherit fakeDrv fakeStore; }
