# abra, the Co-op Cloud CLI: the pinned release binary, the abra directory the host's own apps
# (Traefik, Drone) are managed from, and the registration of the local Docker daemon as abra's
# server `default` in it. The runner keeps a separate abra directory (runner.nix), so that CI
# runs and their janitor never see the infrastructure's apps.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  # abra's release assets (git.coopcloud.tech/toolshed/abra/releases).
  abraUrl = "https://git.coopcloud.tech/toolshed/abra/releases/download/${cfg.abra.version}/abra_${cfg.abra.version}_linux_x86_64";
  cclib = import ../lib { inherit lib pkgs; };
  inherit (lib) mkOption types literalExpression;
in
{
  options.services.cc-ci.abra = {
    version = mkOption {
      type = types.str;
      default = "0.13.0-beta";
      description = "The abra release to install (nix/abra.nix fetches its published binary).";
    };

    hash = mkOption {
      type = types.nullOr (types.strMatching "sha256-.+");
      default = null;
      example = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
      description = ''
        The SRI hash of that release's binary. No source reachable from the machines this
        repository is written on could confirm one, so the host refuses to build until it is
        set, and the assertion prints the command that computes it.
      '';
    };

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ../abra.nix { inherit (cfg.abra) version hash; url = abraUrl; };
      defaultText = literalExpression "pkgs.callPackage ./nix/abra.nix { inherit (config.services.cc-ci.abra) version hash; url = …; }";
      description = "abra, as its pinned release binary (nix/abra.nix).";
    };

    stateDirectory = mkOption {
      type = types.strMatching "[a-z0-9-]+";
      default = "cc-ci-abra";
      description = "Name under /var/lib of the root-only abra directory of the host's own apps.";
    };

    directory = mkOption {
      type = types.str;
      readOnly = true;
      default = "/var/lib/${cfg.abra.stateDirectory}";
      defaultText = literalExpression ''"/var/lib/''${config.services.cc-ci.abra.stateDirectory}"'';
      description = "`ABRA_DIR` of the host's own apps.";
    };

    flags = mkOption {
      type = types.listOf types.str;
      default = [ "--no-input" ];
      description = "Flags given to every abra command the reconcile units run (they have no terminal).";
    };

    deployFlags = mkOption {
      type = types.listOf types.str;
      default = [ "--no-domain-checks" ];
      description = ''
        Extra flags of `abra app deploy`. abra's domain check compares the app's DNS with this
        host's address, which fails behind a gateway that passes TLS through.
      '';
    };

    network = mkOption {
      type = types.str;
      default = "proxy";
      description = "The swarm overlay network Traefik and the apps share (Co-op Cloud recipes expect `proxy`).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = cfg.abra.hash != null;
      message = ''
        services.cc-ci.abra.hash is unset. Compute it on any machine with Nix and network, then set it in nix/hosts/cc-ci/instance.nix:
          nix --extra-experimental-features nix-command store prefetch-file --hash-type sha256 ${abraUrl}
      '';
    }];

    environment.systemPackages = [
      cfg.abra.package
      # For the operator: abra on the host's own apps, e.g. `cc-ci-abra app ps traefik.<domain>`.
      (pkgs.writeShellScriptBin "cc-ci-abra" ''
        export ABRA_DIR=${cfg.abra.directory}
        exec ${lib.getExe cfg.abra.package} "$@"
      '')
    ];

    systemd.services.cc-ci-abra-server = cclib.mkReconcileService {
      description = "cc-ci: abra knows the local swarm as server 'default'";
      script = cclib.reconcileScript "abra-server" [ cfg.abra.package pkgs.docker pkgs.coreutils ];
      requires = [ "cc-ci-swarm.service" ];
      environment = {
        ABRA_DIR = cfg.abra.directory;
        HOME = cfg.abra.directory;
      };
      serviceConfig = {
        StateDirectory = cfg.abra.stateDirectory;
        StateDirectoryMode = "0700";
      };
    };
  };
}
