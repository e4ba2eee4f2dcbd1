# Is everything cargo and the tests need inside the Nix package's source
# (nixos-module/package.nix, `src`)? Used by tests/nix/run.sh ("source set").
#
#   nix-instantiate --eval --strict --json tests/nix/source-set.nix -A report      # any Nix, no nixpkgs
#   nix eval --raw --file tests/nix/source-set.nix --arg lib 'import .../lib' report
#
# What must be in the source (`required`, computed here from the tree with builtins only):
#   - Cargo.toml, Cargo.lock, src/ (all of it), build.rs or `package.build`;
#   - every target Cargo builds or checks: [lib]/[[bin]]/[[test]]/[[bench]]/[[example]]
#     (`path`, or the default path for `name`), and the auto-discovered ones (src/main.rs,
#     src/bin/, tests/*.rs, benches/*.rs, examples/*.rs, and <dir>/*/main.rs);
#   - the modules they load (`mod x;` -> x.rs or x/mod.rs, `#[path = "..."]`), recursively;
#   - include_str!/include_bytes!/include! targets in any of those files;
#   - files the tests read from the checkout: tests/fixtures/ (when present), every
#     `env!("CARGO_MANIFEST_DIR")` joined with a literal path (`.join("...")`,
#     `concat!(env!("CARGO_MANIFEST_DIR"), "/...")`), and every relative path literal
#     ("dir/file") that names something in the repository (cargo runs tests in the package
#     root); paths leaving the repository
#     (`../shared/testdata`) are listed in `outside`: no source set can hold them, the tests
#     must skip without them;
#   - .cargo/ and rust-toolchain(.toml) when present.
# What is in the source:
#   - with nixpkgs' lib (`lib` given): package.nix evaluated with that lib, the file set given
#     to lib.fileset.toSource listed with lib.fileset.toList;
#   - without it (`lib = null`, any Nix >= 2.3): package.nix evaluated with a stub lib whose
#     lib.fileset implements path, maybeMissing, union(s), difference, intersection and
#     toSource with the same membership rules (a file is in `difference A B` when it is under
#     a path of A and under none of B); any other lib.fileset function is an evaluation error
#     naming it, so the stub cannot silently disagree with package.nix.
{
  repo ? ../..,
  lib ? null,
  # The package file to check (run.sh passes another one to show a failing version); it is
  # evaluated as if it were nixos-module/package.nix, so its relative paths must resolve from
  # there: run.sh copies it into place in a scratch copy of the tree.
  packageNix ? repo + "/nixos-module/package.nix",
}:
let
  b = builtins;
  root = toString repo;
  rel = p: let s = toString p; in if s == root then "" else b.substring (b.stringLength root + 1) (-1) s;
  abs = r: if r == "" then repo else repo + "/${r}";
  exists = r: b.pathExists (abs r);
  hasPrefix = pre: s: b.substring 0 (b.stringLength pre) s == pre;
  hasSuffix = suf: s:
    let
      ls = b.stringLength s;
      lf = b.stringLength suf;
    in
    ls >= lf && b.substring (ls - lf) lf s == suf;
  concatMap = f: l: b.concatLists (map f l);
  join = d: n: if d == "" || d == "." then n else "${d}/${n}";
  typeOf = r:
    let
      d = dirOf r;
      entries = b.readDir (abs (if d == "." then "" else d));
    in
    if r == "" then "directory" else if exists (if d == "." then "" else d) then entries.${baseNameOf r} or null else null;
  isDir = r: typeOf r == "directory";
  isFile = r: let t = typeOf r; in t != null && t != "directory";
  # All files under a directory (or the file itself), as repository-relative paths.
  filesUnder = r:
    if isDir r then
      concatMap (n: filesUnder (join r n)) (b.attrNames (b.readDir (abs r)))
    else
      [ r ];
  dirEntries = r: if isDir r then b.readDir (abs r) else { };
  # Normalise a/./b and a/x/../b (include paths relative to a file).
  normalise = p:
    let
      parts = b.filter (s: b.isString s && s != "" && s != ".") (b.split "/" p);
      step = acc: s:
        if s == ".." then
          (if acc == [ ] || b.elemAt acc (b.length acc - 1) == ".." then acc ++ [ ".." ] else b.genList (i: b.elemAt acc i) (b.length acc - 1))
        else
          acc ++ [ s ];
    in
    b.concatStringsSep "/" (b.foldl' step [ ] parts);

  cargo = b.fromTOML (b.readFile (abs "Cargo.toml"));
  pkg = cargo.package or { };
  auto = kind: default: pkg.${kind} or default;

  # ---- targets ----------------------------------------------------------------------------
  # The auto-discovered targets of a directory: dir/*.rs and dir/*/main.rs.
  discovered = dir:
    let
      e = dirEntries dir;
    in
    concatMap (
      n:
      if e.${n} == "directory" then
        (if isFile (join dir "${n}/main.rs") then [ (join dir "${n}/main.rs") ] else [ ])
      else if hasSuffix ".rs" n then
        [ (join dir n) ]
      else
        [ ]
    ) (b.attrNames e);
  declared = kind: dir:
    map (
      t:
      if t ? path then
        t.path
      else if isFile (join dir "${t.name}.rs") || !isFile (join dir "${t.name}/main.rs") then
        join dir "${t.name}.rs"
      else
        join dir "${t.name}/main.rs"
    ) (cargo.${kind} or [ ]);
  buildScript =
    if pkg ? build then
      (if b.isString pkg.build then [ pkg.build ] else [ ])
    else if isFile "build.rs" then
      [ "build.rs" ]
    else
      [ ];
  targets =
    buildScript
    ++ [ (cargo.lib.path or "src/lib.rs") ]
    ++ [ "src/main.rs" ]
    ++ declared "bin" "src/bin"
    ++ declared "test" "tests"
    ++ declared "bench" "benches"
    ++ declared "example" "examples"
    ++ (if auto "autobins" true then discovered "src/bin" else [ ])
    ++ (if auto "autotests" true then discovered "tests" else [ ])
    ++ (if auto "autobenches" true then discovered "benches" else [ ])
    ++ (if auto "autoexamples" true then discovered "examples" else [ ]);
  # src/lib.rs and src/main.rs are targets only when present; declared ones must exist.
  optionalTargets = [ (cargo.lib.path or "src/lib.rs") "src/main.rs" ];

  # ---- modules and includes, from every target, recursively ------------------------------------
  modRe = "(#[[]path[[:space:]]*=[[:space:]]*\"([^\"]+)\"[]][[:space:]]*)?(pub([(][^)]*[)])?[[:space:]]+)?mod[[:space:]]+([A-Za-z0-9_]+)[[:space:]]*;";
  includeRe = "include(_str|_bytes)?![[:space:]]*[(][[:space:]]*\"([^\"]+)\"[[:space:]]*[)]";
  includeManifestDirRe = "include(_str|_bytes)?![[:space:]]*[(][[:space:]]*concat![[:space:]]*[(][[:space:]]*env![[:space:]]*[(][[:space:]]*\"CARGO_MANIFEST_DIR\"[[:space:]]*[)][[:space:]]*,[[:space:]]*\"/?([^\"]+)\"";
  joinRe = "env![[:space:]]*[(][[:space:]]*\"CARGO_MANIFEST_DIR\"[[:space:]]*[)][[:space:]]*[)]?[[:space:]]*[.]join[(][[:space:]]*\"([^\"]+)\"";
  concatRe = "concat![[:space:]]*[(][[:space:]]*env![[:space:]]*[(][[:space:]]*\"CARGO_MANIFEST_DIR\"[[:space:]]*[)][[:space:]]*,[[:space:]]*\"/?([^\"]+)\"";
  literalRe = "\"([A-Za-z0-9_][A-Za-z0-9_.-]*/[A-Za-z0-9_./-]*[A-Za-z0-9_])\"";
  matches = re: text: b.filter b.isList (b.split re text);
  # Comments would give false `mod x;` hits: drop // line comments first.
  code = text: b.concatStringsSep "\n" (map (l: let m = b.match "([^\"]*)//.*" l; in if m == null then l else b.head m) (b.filter b.isString (b.split "\n" text)));

  scan = item:
    let
      f = item.key;
      text = code (b.readFile (abs f));
      d = dirOf f;
      base = baseNameOf f;
      modRs = item.root || b.elem base [ "mod.rs" "main.rs" "lib.rs" ];
      subDir = if modRs then d else join d (b.substring 0 (b.stringLength base - 3) base);
      mods = map (
        m:
        let
          pathAttr = b.elemAt m 1;
          name = b.elemAt m 4;
          file = join subDir "${name}.rs";
          dirMod = join subDir "${name}/mod.rs";
        in
        if pathAttr != null then
          normalise (join d pathAttr)
        else if isFile file || !isFile dirMod then
          file
        else
          dirMod
      ) (matches modRe text);
    in
    {
      modules = map (m: { key = m; root = false; from = f; }) (b.filter isFile mods);
      missingModules = map (m: { path = m; why = "module of ${f}"; }) (b.filter (m: !isFile m) mods);
      includes = map (m: { path = normalise (join d (b.elemAt m 1)); why = "include${toString (b.elemAt m 0)}! in ${f}"; }) (matches includeRe text)
        ++ map (m: { path = normalise (b.elemAt m 1); why = "include${toString (b.elemAt m 0)}! in ${f}"; }) (matches includeManifestDirRe text);
      reads = map (m: { path = normalise (b.head m); why = "read by ${f} (CARGO_MANIFEST_DIR)"; }) (matches joinRe text ++ matches concatRe text)
        # cargo runs tests in the package root: a relative path literal naming a file or
        # directory of the repository is read from there.
        ++ map (m: { path = normalise (b.head m); why = "path literal in ${f} (tests run in the package root)"; }) (
          b.filter (m: exists (normalise (b.head m))) (matches literalRe text)
        );
    };

  rootItems = map (t: { key = t; root = true; }) (b.filter isFile targets);
  rustFiles = b.genericClosure {
    startSet = rootItems;
    operator = item: (scan item).modules;
  };
  scans = map scan rustFiles;
  allIncludes = concatMap (s: s.includes) scans;
  allReads = concatMap (s: s.reads) scans;
  leaves = p: p == ".." || hasPrefix "../" p;

  required =
    map (p: { path = p; why = "the manifest"; }) [ "Cargo.toml" "Cargo.lock" ]
    ++ map (p: { path = p; why = "target in Cargo.toml"; }) (b.filter (t: isFile t || !b.elem t optionalTargets) targets)
    ++ map (p: { path = p; why = "src/"; }) (filesUnder "src")
    ++ map (i: { path = i.key; why = "module (from ${i.from})"; }) (b.filter (i: !i.root) rustFiles)
    ++ concatMap (s: s.missingModules) scans
    ++ concatMap (i: map (p: i // { path = p; }) (if isDir i.path then filesUnder i.path else [ i.path ])) (b.filter (i: !leaves i.path) (allIncludes ++ allReads))
    ++ (if isDir "tests/fixtures" then map (p: { path = p; why = "tests/fixtures/"; }) (filesUnder "tests/fixtures") else [ ])
    ++ concatMap (p: map (f: { path = f; why = "cargo configuration"; }) (filesUnder p)) (b.filter exists [ ".cargo" "rust-toolchain" "rust-toolchain.toml" ]);
  outside = map (i: "${i.path} (${i.why})") (b.filter (i: leaves i.path) (allIncludes ++ allReads));

  # ---- the package's source set -------------------------------------------------------------
  # package.nix evaluated with `lib` (real, or the stub below), toSource's arguments captured.
  captured = args: { __toSourceArgs = args; };
  stubLib =
    let
      # A file set is { has = rel: bool; }.
      ofPath = p:
        if b.isAttrs p && p ? has then
          p
        else if !b.pathExists p then
          throw "lib.fileset (stub): ${toString p} does not exist (lib.fileset refuses missing paths: use lib.fileset.maybeMissing)"
        else
          let
            r = rel p;
          in
          { has = f: r == "" || f == r || hasPrefix "${r}/" f; };
      empty = { has = _: false; };
      unions = l: let sets = map ofPath l; in { has = f: b.any (s: s.has f) sets; };
    in
    {
      importTOML = p: b.fromTOML (b.readFile p);
      optionalString = c: s: if c then s else "";
      licenses = { };
      platforms = { };
      fileset = {
        maybeMissing = p: if b.pathExists p then ofPath p else empty;
        inherit unions;
        union = x: y: unions [ x y ];
        difference = x: y: let sx = ofPath x; sy = ofPath y; in { has = f: sx.has f && !sy.has f; };
        intersection = x: y: let sx = ofPath x; sy = ofPath y; in { has = f: sx.has f && sy.has f; };
        toSource = captured;
      };
    };
  evalLib = if lib == null then stubLib else lib // { fileset = lib.fileset // { toSource = captured; }; };
  package = import packageNix {
    lib = evalLib;
    stdenv = {
      buildPlatform.canExecute = _: true;
      hostPlatform = { };
    };
    rustPlatform.buildRustPackage = attrs: attrs;
    installShellFiles = null;
    pkg-config = null;
    sqlite = null;
  };
  srcArgs = package.src.__toSourceArgs or (throw "package.nix: src is not lib.fileset.toSource { ... }");
  sourceRootOk = toString srcArgs.root == root;
  inSource =
    if lib == null then
      (stubLib.fileset.unions [ srcArgs.fileset ]).has
    else
      let
        listed = b.listToAttrs (map (p: { name = rel p; value = true; }) (lib.fileset.toList srcArgs.fileset));
      in
      f: listed ? ${f};

  dedup = l: b.attrValues (b.listToAttrs (map (i: { name = i.path; value = i; }) l));
  missing = b.filter (i: !isFile i.path) (dedup required);
  excluded = b.filter (i: isFile i.path && !inSource i.path) (dedup required);
  how = if lib == null then "package.nix read with a stub lib.fileset" else "lib.fileset.toList";
in
{
  inherit outside;
  required = map (i: i.path) (dedup required);
  report =
    (if !sourceRootOk then "FAIL source root is the repository: toSource root is ${toString srcArgs.root}\n" else "")
    + b.concatStringsSep "" (map (i: "FAIL ${i.path} is in the Nix source (${how}): needed as ${i.why}, excluded by nixos-module/package.nix\n") excluded)
    + b.concatStringsSep "" (map (i: "FAIL ${i.path} exists: needed as ${i.why}, not in the tree (cargo fails too)\n") missing)
    + (
      if excluded == [ ] && missing == [ ] && sourceRootOk then
        "PASS all ${toString (b.length (dedup required))} files cargo and the tests need are in the Nix source (${how}; targets, modules, include_*! targets, src/, tests/fixtures/)\n"
      else
        ""
    );
}
