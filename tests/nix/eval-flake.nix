# Evaluates the structure of flake.nix with nixpkgs' `lib` alone: `nixpkgs.legacyPackages` is a
# stub that throws when used, so only what does not need packages is checked (output names,
# systems, the VM tests found in nixos-module/tests/, each test file's shape).
#
#   nix eval --raw --file tests/nix/eval-flake.nix --arg lib 'import /path/to/nixpkgs.lib/lib' report
{
  lib,
  repo ? ../..,
}:
let
  flake = import (repo + "/flake.nix");
  systems = [
    "aarch64-linux"
    "x86_64-linux"
  ];
  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs systems (s: throw "eval-flake.nix: no nixpkgs for ${s} here");
  };
  self = flake.outputs { inherit self nixpkgs; };

  vmFiles = lib.attrNames (
    lib.filterAttrs (n: t: t == "regular" && lib.hasSuffix ".nix" n) (
      builtins.readDir (repo + "/nixos-module/tests")
    )
  );
  vmChecks = map (f: "vm-${lib.removeSuffix ".nix" f}") vmFiles;
  names = lib.attrNames;

  testShape =
    f:
    let
      t = import (repo + "/nixos-module/tests/${f}") {
        inherit lib;
        oneiricModule = { };
      };
    in
    builtins.isString t.name
    && t.nodes != { }
    && lib.all (n: builtins.isFunction n || builtins.isAttrs n) (lib.attrValues t.nodes)
    && builtins.isString t.testScript
    && lib.hasInfix "subtest" t.testScript;

  expect = name: ok: detail: { inherit name ok detail; };
  expectations = [
    (expect "nixpkgs input is a stable release branch" (
      builtins.match "github:NixOS/nixpkgs/nixos-[0-9][0-9][.][0-9][0-9]" flake.inputs.nixpkgs.url != null
    ) flake.inputs.nixpkgs.url)
    (expect "outputs for x86_64-linux and aarch64-linux" (
      lib.all (o: names o == systems) [
        self.packages
        self.checks
        self.devShells
        self.formatter
      ]
    ) (toString (names self.packages)))
    (expect "packages.default, overlays.default, nixosModules.default, devShells.default" (
      self.packages.x86_64-linux ? default
      && self.overlays ? default
      && self.nixosModules ? default
      && self.devShells.x86_64-linux ? default
    ) "")
    (expect "checks: package, cargo-test, module-eval and one per nixos-module/tests/*.nix" (
      names self.checks.x86_64-linux == lib.sort lib.lessThan ([ "cargo-test" "module-eval" "package" ] ++ vmChecks)
    ) (toString (names self.checks.x86_64-linux)))
  ]
  ++ map (f: expect "VM test ${f}: { name; nodes; testScript with subtests; }" (testShape f) "") vmFiles;
in
{
  # The Python test scripts, for a syntax check by run.sh (python3 -m py_compile).
  testScripts = lib.concatMapStrings (f: "${lib.removeSuffix ".nix" f}\n") vmFiles;
  testScript =
    name:
    (import (repo + "/nixos-module/tests/${name}.nix") {
      inherit lib;
      oneiricModule = { };
    }).testScript;

  report = lib.concatMapStrings (
    e: if e.ok then "PASS ${e.name}\n" else "FAIL ${e.name}: ${toString e.detail}\n"
  ) expectations;
}
