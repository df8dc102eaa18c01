# services.cc-ci: the whole cc-ci host (or a runner-only host) from one option tree. The
# instance-wide settings live here; each concern has its module, imported below, adding its own
# branch to the same tree.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  inherit (lib) mkOption mkEnableOption types literalExpression;
  repository = types.strMatching "[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+";
  staticAddresses =
    lib.any (i: (i.ipv4.addresses or [ ]) != [ ] || (i.ipv6.addresses or [ ]) != [ ]) (lib.attrValues (config.networking.interfaces or { }))
    || (config.systemd.network.networks or { }) != { };
in
{
  imports = [
    ./secrets.nix
    ./swarm.nix
    ./proxy.nix
    ./abra.nix
    ./drone.nix
    ./runner.nix
    ./bridge.nix
    ./dashboard.nix
    ./janitor.nix
    ./tests-env.nix
  ];

  options.services.cc-ci = {
    enable = mkEnableOption "cc-ci, the CI server for Co-op Cloud recipes";

    role = mkOption {
      type = types.enum [ "server" "runner" ];
      default = "server";
      description = ''
        What this host runs. `server`: everything (Drone, the bridge, the dashboard, and a
        runner with its swarm and Traefik). `runner`: only what runs tests (the swarm, Traefik,
        abra, the test environment, the Drone exec runner and the janitor), polling the server's
        Drone; Drone spreads builds over all runners, which is how cc-ci grows past one machine.
      '';
    };

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ../package.nix { };
      defaultText = literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The cc-ci binaries: cc-ci-bridge, cc-ci-stage-runner and cc-ci-dashboard-gen.";
    };

    domain = mkOption {
      type = types.strMatching "[a-z0-9.-]+";
      example = "ci.coopcloud.tech";
      description = ''
        The instance's domain. The dashboard is served at it, Drone at `drone.<domain>`, and the
        apps under test at `*.<domain>`: changing it repoints the whole instance. DNS for the
        domain and its wildcard must reach this host's port 443, and the wildcard certificate
        must cover both (docs/install.md).
      '';
    };

    droneDomain = mkOption {
      type = types.str;
      default = "drone.${cfg.domain}";
      defaultText = literalExpression ''"drone.''${config.services.cc-ci.domain}"'';
      description = "Where Drone is served; runners on other hosts connect to it.";
    };

    appDomain = mkOption {
      type = types.strMatching "[a-z0-9.-]+";
      default = cfg.domain;
      defaultText = literalExpression "config.services.cc-ci.domain";
      example = "r2.ci.coopcloud.tech";
      description = ''
        The parent domain of the apps this host's runner deploys (`<app>.<appDomain>`), and of
        its Traefik. A second runner host needs its own (its own DNS wildcard and certificate),
        since each host routes only its own apps.
      '';
    };

    droneAddress = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "192.168.1.10";
      description = ''
        Runner hosts: the address at which this host reaches the server's Traefik, mapped to
        `droneDomain` in /etc/hosts. Needed when the two hosts sit behind the same gateway and
        it does not route its public address back in (hairpin NAT). The server maps its own
        names to 127.0.0.1 by itself.
      '';
    };

    adminKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3Nza… alice@laptop" ];
      description = ''
        SSH public keys that may log in as root. The flake replaces the host's whole NixOS
        configuration, so keys the original install declared are gone after the switch unless
        they are here; the host refuses to build without one (docs/install.md).
      '';
    };

    network = mkOption {
      type = types.nullOr (types.enum [ "dhcp" "static" ]);
      default = null;
      description = ''
        How the host gets its address, declared so that a switch never drops it: `dhcp` turns
        DHCP on; `static` means the host file declares the addresses
        (`networking.interfaces.<name>.ipv4.addresses`, `networking.defaultGateway`, or
        `systemd.network.networks`), carried over from the host's current configuration. The
        host refuses to build while unset, or `static` with no address declared.
      '';
    };

    giteaUrl = mkOption {
      type = types.strMatching "https?://[^/]+";
      example = "https://git.coopcloud.tech";
      description = "The Gitea instance the recipes live on (root URL, no trailing slash).";
    };

    botUser = mkOption {
      type = types.str;
      example = "cc-ci-bot";
      description = "The Gitea account cc-ci reads and comments as; its own comments are never commands.";
    };

    orgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "coop-cloud" ];
      description = "Members of these Gitea organisations may trigger runs with `!testme`.";
    };

    allowUsers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "alice" ];
      description = "These Gitea logins may trigger runs too.";
    };

    recipes = mkOption {
      type = types.attrsOf repository;
      default = { };
      example = { custom-html = "coop-cloud/custom-html"; };
      description = ''
        Enrolled recipes: recipe name to its Gitea repository `owner/name`. Each gets the generic
        checks; a `tests/<recipe>/` in this repository adds its own (docs/enroll-recipe.md).
      '';
    };

    droneRepository = mkOption {
      type = repository;
      example = "coop-cloud/cc-ci";
      description = "The repository (this one) whose `.drone.yml` pipeline runs the tests.";
    };

    droneBranch = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "Branch of the Drone repository to build; null: its default branch.";
    };

    runnerHosts = mkOption {
      type = types.listOf (types.strMatching "[A-Za-z0-9][A-Za-z0-9._-]*");
      default = [ ];
      example = [ "cc-ci-runner" ];
      description = ''
        The runner hosts besides the server, by runner name (`services.cc-ci.runner.name` on
        each, its hostName by default; Drone shows it as the machine a build ran on). The
        server takes each one's results (`PUT /results/…` on the bridge) with that host's own
        token (`secrets.runnerTokenFiles`), and only for builds Drone says ran there.
      '';
    };

    resultsUrl = mkOption {
      type = types.nullOr (types.strMatching "https?://[^/ ]+");
      default = null;
      example = "http://10.0.0.1:8088";
      description = ''
        Runner hosts: where this host ships its runs' results, the server's bridge as it
        reaches it (the bridge's `listen`; docs/install.md, "A second runner host"). Required
        on a runner host, unused on the server (its runner writes the results directory
        itself).
      '';
    };

    maxConcurrentTests = mkOption {
      type = types.ints.positive;
      default = 2;
      description = ''
        How many test runs this host runs at once: the exec runner's `DRONE_RUNNER_CAPACITY`
        (one cc-ci build is one Drone stage). Each run deploys a full app, so size it to the
        host's memory.
      '';
    };

    timeouts = {
      deploy = mkOption {
        type = types.ints.positive;
        default = 900;
        description = "Seconds an app may take to deploy and answer through the proxy (stage-runner's `deploy_timeout_secs`).";
      };
      command = mkOption {
        type = types.ints.positive;
        default = 1800;
        description = "Seconds one abra command or one pytest phase of a stage may take (stage-runner's `command_timeout_secs`).";
      };
      run = mkOption {
        type = types.ints.positive;
        default = 60;
        description = ''
          Minutes a whole run may take (stage-runner's `run_deadline_secs`): past it the stage
          still running is stopped, the app torn down, and the run's verdict is error "deadline".
        '';
      };
      build = mkOption {
        type = types.ints.positive;
        default = 180;
        description = ''
          Minutes Drone lets a whole build run before killing it: the repository's timeout in
          Drone, set by cc-ci-drone-repo.service. Keep it above the stages' total.
        '';
      };
      request = mkOption {
        type = types.ints.positive;
        default = 10;
        description = "Seconds any request to Gitea or Drone may take (bridge and dashboard-gen).";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    users.users.root.openssh.authorizedKeys.keys = cfg.adminKeys;
    networking.useDHCP = lib.mkIf (cfg.network == "dhcp") true;
    # The host's clients (runner, bridge, dashboard-gen) reach Drone and the dashboard by their
    # public names, which resolve to the gateway: map them to this host's Traefik instead.
    networking.hosts = lib.mkMerge [
      (lib.mkIf (cfg.role == "server") { "127.0.0.1" = [ cfg.domain cfg.droneDomain ]; })
      (lib.mkIf (cfg.role == "runner" && cfg.droneAddress != null) { ${cfg.droneAddress} = [ cfg.droneDomain ]; })
    ];

    assertions = [
      {
        assertion = cfg.adminKeys != [ ];
        message = "services.cc-ci.adminKeys is empty: after this switch nobody could log in to the host over SSH (the flake replaces its whole configuration). Put root's public keys there, from /root/.ssh/authorized_keys or the host's /etc/nixos/configuration.nix (docs/install.md, \"Carry the machine over\").";
      }
      {
        assertion = cfg.adminKeys == [ ] || config.services.openssh.enable or false;
        message = "services.cc-ci.adminKeys is set but services.openssh.enable is not: nobody could log in.";
      }
      {
        assertion = cfg.network != null;
        message = "services.cc-ci.network is unset: say \"dhcp\", or \"static\" and declare the host's addresses, carried over from its /etc/nixos/configuration.nix; otherwise a switch may drop the network (docs/install.md, \"Carry the machine over\").";
      }
      {
        assertion = cfg.network != "static" || staticAddresses;
        message = "services.cc-ci.network is \"static\" but no address is declared (networking.interfaces.<name>.ipv4.addresses or systemd.network.networks): the host would come up without its address.";
      }
      {
        assertion = cfg.timeouts.build > cfg.timeouts.run;
        message = "services.cc-ci.timeouts.build must exceed timeouts.run, so that cc-ci's deadline stops a run (and tears it down) before Drone kills it.";
      }
      {
        assertion = cfg.role != "server" || cfg.orgs != [ ] || cfg.allowUsers != [ ];
        message = "services.cc-ci: orgs and allowUsers are both empty: nobody could trigger a run.";
      }
      {
        assertion = cfg.recipes != { };
        message = "services.cc-ci.recipes: no recipe is enrolled.";
      }
    ];
  };
}
