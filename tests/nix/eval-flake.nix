# Evaluates flake.nix with nixpkgs' `lib` alone: `nixpkgs.legacyPackages.<system>` is the stub
# package set of tests/nix/stub-pkgs.nix (the real package.nix, called with a buildRustPackage
# that returns its arguments), so what does not need a build is checked for both systems:
# output names, the package's platforms and source, the cargo-test check's source, the dev
# shell, the overlay, the VM tests found in nixos-module/tests/ and each test file's shape.
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
  stubPkgs = system: import (repo + "/tests/nix/stub-pkgs.nix") { inherit lib system; };
  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs systems stubPkgs;
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
  ]
  ++ concatMap perSystem systems
  ++ [
    (expect "overlays.default adds oneiric (package.nix)" (
      let
        final = stubPkgs "x86_64-linux";
      in
      (self.overlays.default final final).oneiric.pname == "oneiric"
    ) "")
  ]
  ++ map (f: expect "VM test ${f}: { name; nodes; testScript with subtests; }" (testShape f) "") vmFiles;

  concatMap = f: l: builtins.concatLists (map f l);
  # The files of a source made with lib.fileset.toSource (captured by stub-pkgs.nix), relative.
  sourceFiles =
    drv:
    let
      args = drv.src.__toSourceArgs;
      root = toString args.root;
    in
    map (p: lib.removePrefix "${root}/" (toString p)) (lib.fileset.toList args.fileset);
  perSystem =
    system:
    let
      pkg = self.packages.${system}.default;
      test = self.checks.${system}.cargo-test;
      pkgFiles = sourceFiles pkg;
      testFiles = sourceFiles test;
      under = dir: builtins.filter (lib.hasPrefix "${dir}/") testFiles;
    in
    [
      (expect "${system}: packages.default is oneiric for ${system}, in its meta.platforms" (
        pkg.pname == "oneiric" && pkg.system == system && builtins.elem system pkg.meta.platforms
      ) "${pkg.system}: ${toString pkg.meta.platforms}")
      (expect "${system}: checks are package, cargo-test, module-eval and one per nixos-module/tests/*.nix" (
        names self.checks.${system} == lib.sort lib.lessThan ([ "cargo-test" "module-eval" "package" ] ++ vmChecks)
      ) (toString (names self.checks.${system})))
      (expect "${system}: cargo-test runs the tests (doCheck) from the package's own source, with tests/ and benches/" (
        test.doCheck
        && testFiles == pkgFiles
        && under "tests" != [ ]
        && under "benches" != [ ]
        && !builtins.elem "flake.nix" testFiles
      ) "doCheck=${lib.boolToString test.doCheck}, ${toString (builtins.length testFiles)} files, tests/: ${toString (under "tests")}")
      (expect "${system}: devShells.default has the package's inputs and the toolchain" (
        builtins.elem pkg self.devShells.${system}.default.inputsFrom
        && lib.all (n: builtins.elem n (map (d: d.name) self.devShells.${system}.default.packages)) [ "cargo" "rustc" "nixfmt" ]
      ) "")
      (expect "${system}: formatter is nixfmt" (self.formatter.${system}.name == "nixfmt") "")
    ];
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
