# Evaluates cc-ci's NixOS modules where nixpkgs cannot be had: with nixpkgs' lib (a checkout
# of it, e.g. github.com/nix-community/nixpkgs.lib) and stubs of the NixOS options and packages
# the modules touch. It checks our modules — option types, defaults, assertions, the rendered
# config files — not nixpkgs' own option types; on a machine with nixpkgs, `nix flake check`
# is the real check. Run through dev/nix-eval.
{ lib
, repo
, host ? "cc-ci"
, domain ? null
  # A secrets repository's directory (dev/fake-secrets, or a broken copy of it in the
  # checker's own tests).
, secrets
  # A checkout of github.com/Mic92/sops-nix: its real module replaces the sops stub.
, sopsNix ? null
  # abra's hash is the operator's to pin (the hosts refuse to build without it); null leaves it
  # unset, as a fresh checkout has it.
, abraHash ? "sha256-0000000000000000000000000000000000000000000="
}:
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
    "gawk"
    "gnupg"
  ];
  pkgs = lib.genAttrs names (n: drv n { }) // {
    # A function whose every argument the stubs have is called (sops-nix's manifest); the rest
    # (our packages, built from sources) stand in as derivations.
    callPackage = f: args:
      let
        fn = if builtins.isFunction f then f else import f;
        have = pkgs // { inherit lib; } // args;
        needed = lib.attrNames (lib.filterAttrs (_: optional: !optional) (builtins.functionArgs fn));
      in
      if lib.all (n: have ? ${n}) needed then fn (builtins.intersectAttrs (builtins.functionArgs fn) have)
      else drv (baseNameOf (toString f)) { };
    runCommand = name: env: script: drv name { inherit env script; };
    writeText = name: text: drv name { inherit text; };
    writeTextFile = a: drv a.name { inherit (a) text; };
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
      "hardware"
    ]
      (_: mkOption { type = types.attrsOf types.anything; default = { }; })
    // {
      services.openssh = mkOption { type = types.attrsOf types.anything; default = { }; };
      swapDevices = mkOption { type = types.listOf types.anything; default = [ ]; };
      assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      warnings = mkOption { type = types.listOf types.str; default = [ ]; };
    };
    config = {
      nix.package = pkgs.nix;
      systemd.package = pkgs.systemd;
      # NixOS's own assertions that a host file without its machine trips first (nixpkgs:
      # nixos/modules/system/boot/stage-1.nix, …/loader/grub/grub.nix, misc/version.nix).
      assertions =
        let
          grub = config.boot.loader.grub or { };
          grubOn = grub.enable or (!(config.boot.isContainer or false) && !(config.boot.loader.systemd-boot.enable or false));
          devices = (grub.devices or [ ]) ++ lib.optional ((grub.device or "") != "") grub.device;
        in
        [
          {
            assertion = lib.any (n: (config.fileSystems.${n}.mountPoint or n) == "/") (lib.attrNames config.fileSystems);
            message = "The ‘fileSystems’ option does not specify your root file system.";
          }
          {
            assertion = !grubOn || devices != [ ] || (grub.mirroredBoots or [ ]) != [ ];
            message = "You must set the option ‘boot.loader.grub.devices’ or 'boot.loader.grub.mirroredBoots' to make the system bootable.";
          }
        ];
      warnings = lib.optional (!(config.system ? stateVersion))
        "system.stateVersion is not set, defaulting to the release's. Read why this matters on https://nixos.org/manual/nixos/stable/options.html#opt-system.stateVersion.";
    };
  };
  # sops-nix's options as the hosts use them, where no checkout of it is given.
  sopsStub = { lib, ... }: with lib; {
    options = {
      sops = {
        secrets = mkOption {
          type = types.attrsOf (types.submodule ({ name, ... }: {
            freeformType = types.attrsOf types.anything;
            options.path = mkOption { type = types.str; default = "/run/secrets/${name}"; };
          }));
          default = { };
        };
        age = mkOption { type = types.attrsOf types.anything; default = { }; };
        defaultSopsFile = mkOption { type = types.anything; default = null; };
      };
    };
  };
  # What the real sops-nix module needs of NixOS and nixpkgs.
  sopsReal = { lib, ... }: {
    imports = [ (/. + "${sopsNix}/modules/sops") ];
    config = {
      services.openssh.hostKeys = lib.mkDefault [
        { type = "ed25519"; path = "/etc/ssh/ssh_host_ed25519_key"; }
        { type = "rsa"; bits = 4096; path = "/etc/ssh/ssh_host_rsa_key"; }
      ];
      sops.package = drv "sops-install-secrets" { };
      sops.validationPackage = drv "sops-install-secrets" { };
    };
  };
  # The secrets repository as a flake input is: a store path.
  secretsInput = builtins.path { path = /. + secrets; name = "source"; };
  evaluated = lib.evalModules {
    modules = [
      stub
      (if sopsNix == null then sopsStub else sopsReal)
      (/. + "${repo}/nix/modules")
      (/. + "${repo}/nix/hosts/${host}")
      { _module.args.pkgs = pkgs; }
      (lib.optionalAttrs (domain != null) { services.cc-ci.domain = lib.mkForce domain; })
      (lib.optionalAttrs (abraHash != null) { services.cc-ci.abra.hash = abraHash; })
    ];
    specialArgs = { secrets = secretsInput; modulesPath = "/nonexistent"; };
  };
  c = evaluated.config;
  failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
in
{
  inherit failed;
  inherit (c) warnings;
  # What sops-nix would hand sops-install-secrets: every secret's key and file (the real module
  # only; forcing it also runs its checks that each sopsFile exists in the store).
  sopsManifest = if sopsNix == null then null else
  let m = builtins.fromJSON (builtins.unsafeDiscardStringContext c.system.build.sops-nix-manifest.text); in
  map (s: { inherit (s) key sopsFile; }) m.secrets;
  # What the docs may name: the units (with their suffixes), and the module's option values.
  docNames = {
    units = map (n: "${n}.service") (lib.attrNames c.systemd.services)
      ++ map (n: "${n}.timer") (lib.attrNames (c.systemd.timers or { }))
      ++ map (n: "${n}.target") (lib.attrNames (c.systemd.targets or { }));
    cc = c.services.cc-ci;
    # The directories the host has: the units' state and cache directories, tmpfiles', and
    # the absolute paths in the binaries' config files.
    dirs =
      let
        units = lib.attrValues c.systemd.services;
        named = key: root: lib.concatMap (u: map (d: "${root}/${d}") (lib.toList (u.serviceConfig.${key} or [ ]))) units;
        configs = lib.concatMap (v: lib.filter (x: lib.isString x && lib.hasPrefix "/" x) (lib.attrValues (builtins.fromJSON (builtins.unsafeDiscardStringContext v.source.json))))
          (lib.attrValues (lib.filterAttrs (_: v: v.source ? json) c.environment.etc));
      in
      named "StateDirectory" "/var/lib" ++ named "CacheDirectory" "/var/cache"
      ++ lib.concatMap lib.attrNames (lib.attrValues (c.systemd.tmpfiles.settings or { })) ++ configs
      # The age key sops-nix decrypts with, put on the host by hand.
      ++ lib.optionals (c.sops.age.keyFile or null != null) [ c.sops.age.keyFile (dirOf c.sops.age.keyFile) ];
  };
  # The config files the modules render for the binaries, by /etc path.
  configs = lib.mapAttrs (_: v: v.source.json) (lib.filterAttrs (_: v: v.source ? json) c.environment.etc);
  everything = {
    inherit (c) systemd users virtualisation networking;
    etc = c.environment.etc;
    sops = { inherit (c.sops) secrets; };
    cc = c.services.cc-ci;
  };
}
