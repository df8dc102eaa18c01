# Evaluates cc-ci's NixOS modules where nixpkgs cannot be had: with nixpkgs' lib (a checkout
# of it, e.g. github.com/nix-community/nixpkgs.lib) and stubs of the NixOS options and packages
# the modules touch. It checks our modules — option types, defaults, assertions, the rendered
# config files — not nixpkgs' own option types; on a machine with nixpkgs, `nix flake check`
# is the real check. Run through dev/nix-eval.
{ lib, repo, host ? "cc-ci", domain ? null, secrets }:
let
  store = name: "/nix/store/00000000000000000000000000000000-${name}";
  drv = name: extra: {
    type = "derivation";
    inherit name;
    pname = name;
    version = "0";
    outPath = store name;
    drvPath = store "${name}.drv";
    meta = { mainProgram = name; };
    passthru = { };
  } // extra;
  names = [
    "coreutils"
    "docker"
    "chromium"
    "nixpkgs-fmt"
    "gnused"
    "shellcheck"
    "git"
    "findutils"
    "drone-runner-exec"
    "deadnix"
    "curl"
    "util-linux"
    "static-web-server"
    "ssh-to-age"
    "sops"
    "rustfmt"
    "procps"
    "makeWrapper"
    "jq"
    "gzip"
    "gnutar"
    "gnugrep"
    "diffutils"
    "clippy"
    "bash"
    "age"
    "drone"
    "openssh"
    "systemd"
    "nix"
  ];
  pkgs = lib.genAttrs names (n: drv n { }) // {
    callPackage = f: _args: drv (baseNameOf (toString f)) { };
    runCommand = name: env: script: drv name { inherit env script; };
    writeText = name: text: drv name { inherit text; };
    writeShellScriptBin = name: text: drv name { inherit text; };
    writeShellApplication = a: drv a.name { inherit (a) text; runtimeInputs = a.runtimeInputs or [ ]; };
    python3 = drv "python3" {
      withPackages = f: drv "python3-env" {
        pkgs = f (lib.genAttrs [ "pytest" "playwright" "requests" ] (n: drv n { }));
      };
    };
    dockerTools.streamLayeredImage = a: drv "stream-${a.name}" { imageName = a.name; imageTag = "fakeTag"; config = a.config; };
    formats.json = {}: {
      type = with lib.types; let v = nullOr (oneOf [ bool int float str path (attrsOf v) (listOf v) ]) // { description = "JSON value"; }; in v;
      generate = name: value: drv name { json = builtins.toJSON value; };
    };
    hostPlatform = { system = "x86_64-linux"; isLinux = true; };
    config = { };
  };
  stub = { config, lib, ... }: with lib; {
    options = lib.genAttrs [
      "environment"
      "networking"
      "nix"
      "nixpkgs"
      "system"
      "systemd"
      "time"
      "users"
      "virtualisation"
      "boot"
      "security"
      "programs"
      "fileSystems"
    ]
      (_: mkOption { type = types.attrsOf types.anything; default = { }; })
    // {
      services.openssh = mkOption { type = types.attrsOf types.anything; default = { }; };
      assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      warnings = mkOption { type = types.listOf types.str; default = [ ]; };
      sops = {
        secrets = mkOption {
          type = types.attrsOf (types.submodule ({ name, ... }: {
            freeformType = types.attrsOf types.anything;
            options.path = mkOption { type = types.str; default = "/run/secrets/${name}"; };
          }));
          default = { };
        };
        templates = mkOption {
          type = types.attrsOf (types.submodule ({ name, ... }: {
            freeformType = types.attrsOf types.anything;
            options.path = mkOption { type = types.str; default = "/run/secrets/rendered/${name}"; };
            options.content = mkOption { type = types.lines; default = ""; };
          }));
          default = { };
        };
        placeholder = mkOption { type = types.attrsOf types.str; default = { }; };
        age = mkOption { type = types.attrsOf types.anything; default = { }; };
        defaultSopsFile = mkOption { type = types.anything; default = null; };
      };
    };
    config = {
      sops.placeholder = mapAttrs (n: _: "<SOPS:${n}:PLACEHOLDER>") config.sops.secrets;
      nix.package = pkgs.nix;
      systemd.package = pkgs.systemd;
    };
  };
  evaluated = lib.evalModules {
    modules = [
      stub
      (/. + "${repo}/nix/modules")
      (/. + "${repo}/nix/hosts/${host}")
      { _module.args.pkgs = pkgs; }
      (lib.optionalAttrs (domain != null) { services.cc-ci.domain = lib.mkForce domain; })
    ];
    specialArgs = { inherit secrets; modulesPath = "/nonexistent"; };
  };
  c = evaluated.config;
  failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
in
{
  inherit failed;
  inherit (c) warnings;
  # The config files the modules render for the binaries, by /etc path.
  configs = lib.mapAttrs (_: v: v.source.json) (lib.filterAttrs (_: v: v.source ? json) c.environment.etc);
  everything = {
    inherit (c) systemd users virtualisation networking;
    etc = c.environment.etc;
    sops = { inherit (c.sops) secrets templates; };
    cc = c.services.cc-ci;
  };
}
