# A small parser for systemd unit files (and drop-ins, sysusers lines), written with
# nixpkgs' `lib` only, so that the NixOS module derives its service from
# packaging/oneiric.service instead of keeping a second copy of it.
#
# Semantics follow systemd's parser where it matters for a unit like ours:
#   - blank lines and lines starting with `#` or `;` are ignored,
#   - a line ending in `\` continues on the next line (comment lines in between are skipped;
#     the backslash becomes a single space),
#   - `[Section]` starts a section, `Key=Value` adds an assignment (whitespace around the key
#     and the value is dropped),
#   - a key assigned several times keeps every value, in order (systemd applies them in order:
#     list settings accumulate, an empty value resets, single-valued settings take the last one).
#     NixOS renders a list value as one line per element in the same order, so a list here
#     reproduces the file exactly.
{ lib }:
let
  inherit (builtins)
    elemAt
    filter
    foldl'
    head
    isList
    length
    match
    ;

  trim =
    s:
    let
      m = match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s;
    in
    if m == null then "" else head m;

  isComment = l: lib.hasPrefix "#" l || lib.hasPrefix ";" l;
  continues = l: lib.hasSuffix "\\" l;
  dropBackslash = l: trim (lib.removeSuffix "\\" l);

  # Raw text -> logical lines (continuations joined, comments and blanks dropped).
  logicalLines =
    text:
    let
      raw = lib.splitString "\n" (lib.replaceStrings [ "\r" ] [ "" ] text);
      step =
        st: rawLine:
        let
          l = trim rawLine;
        in
        if st.cur == null then
          if l == "" || isComment l then
            st
          else if continues l then
            st // { cur = dropBackslash l; }
          else
            st // { acc = st.acc ++ [ l ]; }
        else if isComment l then
          st
        else if l == "" then
          {
            acc = st.acc ++ [ st.cur ];
            cur = null;
          }
        else if continues l then
          st // { cur = "${st.cur} ${dropBackslash l}"; }
        else
          {
            acc = st.acc ++ [ "${st.cur} ${l}" ];
            cur = null;
          };
      end = foldl' step {
        acc = [ ];
        cur = null;
      } raw;
    in
    end.acc ++ lib.optional (end.cur != null) end.cur;

  # Text -> [ { section; key; value; } ] in file order.
  parseAssignments =
    name: text:
    let
      step =
        st: l:
        let
          sec = match "[[](.+)[]]" l;
          kv = match "([^=]+)=(.*)" l;
        in
        if sec != null then
          st // { section = head sec; }
        else if kv == null then
          throw "${name}: cannot parse line `${l}'"
        else if st.section == null then
          throw "${name}: assignment outside of a section: `${l}'"
        else
          st
          // {
            out = st.out ++ [
              {
                inherit (st) section;
                key = trim (elemAt kv 0);
                value = trim (elemAt kv 1);
              }
            ];
          };
    in
    (foldl' step {
      section = null;
      out = [ ];
    } (logicalLines text)).out;

  # [ assignments ] -> { Section = { Key = [ values ]; }; } (values in order).
  group =
    assignments:
    foldl' (
      acc: a:
      acc
      // {
        ${a.section} = (acc.${a.section} or { }) // {
          ${a.key} = ((acc.${a.section} or { }).${a.key} or [ ]) ++ [ a.value ];
        };
      }
    ) { } assignments;

  # A key given once becomes a string, a key given several times a list.
  simplify = lib.mapAttrs (
    _: lib.mapAttrs (_: values: if length values == 1 then head values else values)
  );

  asList = v: if isList v then v else [ v ];
in
rec {
  inherit trim logicalLines parseAssignments;

  # parse "oneiric.service" (readFile ../packaging/oneiric.service)
  #   -> { Unit = { Description = "..."; After = "..."; }; Service = { ... }; Install = { ... }; }
  parse = name: text: simplify (group (parseAssignments name text));

  # Apply drop-ins (already parsed, in the order systemd reads them) on top of a parsed unit:
  # every assignment of a drop-in comes after the unit's own, exactly as systemd applies them.
  withDropIns =
    unit: dropIns:
    foldl' (
      acc: dropIn:
      lib.recursiveUpdate acc (
        lib.mapAttrs (
          section: keys:
          lib.mapAttrs (
            key: value:
            let
              merged = lib.optionals (acc ? ${section}.${key}) (asList acc.${section}.${key}) ++ asList value;
            in
            if length merged == 1 then head merged else merged
          ) keys
        ) dropIn
      )
    ) unit dropIns;

  # Map a function over every value of every section (lists element-wise).
  mapValues =
    f: lib.mapAttrs (_: lib.mapAttrs (_: v: if isList v then map f v else f v));

  # The lines of a sysusers.d file, as { type; name; id; gecos; home; shell; }.
  # Only the forms used by packaging/oneiric.sysusers are needed: `u[!] NAME ID "GECOS" HOME SHELL`
  # and `g NAME ID`.
  parseSysusers =
    text:
    let
      parseLine =
        l:
        let
          u = match ''(u!?)[[:space:]]+([^[:space:]]+)[[:space:]]+([^[:space:]]+)[[:space:]]+"([^"]*)"[[:space:]]*([^[:space:]]*)[[:space:]]*([^[:space:]]*).*'' l;
          other = match "([a-zA-Z!]+)[[:space:]]+([^[:space:]]+).*" l;
        in
        if u != null then
          {
            type = "u";
            name = elemAt u 1;
            id = elemAt u 2;
            gecos = elemAt u 3;
            home = elemAt u 4;
            shell = elemAt u 5;
          }
        else if other != null then
          {
            type = elemAt other 0;
            name = elemAt other 1;
          }
        else
          null;
    in
    filter (x: x != null) (map parseLine (logicalLines text));

  # Render sections the way NixOS writes a unit (nixos/lib/systemd-lib.nix: one line per list
  # element, keys sorted). Used by the evaluation check that runs without nixpkgs.
  renderSection =
    section: attrs:
    "[${section}]\n"
    + lib.concatStrings (
      lib.concatLists (
        lib.mapAttrsToList (
          key: value:
          map (
            v:
            "${key}=${
              if v == true then
                "true"
              else if v == false then
                "false"
              else
                toString v
            }\n"
          ) (asList value)
        ) attrs
      )
    );
}
