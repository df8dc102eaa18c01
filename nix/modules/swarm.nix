# Docker and the single-node swarm every Co-op Cloud app is deployed to, and the reconcile chain
# that converges the rest of the host: its target, the unit that re-runs and reports it, its
# timer, and cc-ci-status.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  cclib = import ../lib { inherit lib pkgs; };
  inherit (lib) mkOption types;

  # The units of the chain: those part of cc-ci-reconcile.target.
  reconcileUnits = lib.attrNames (lib.filterAttrs (_: u: lib.elem "cc-ci-reconcile.target" (u.partOf or [ ])) config.systemd.services);
  reconcileSecs = 3600;
  statusEnvironment = {
    RECONCILE_UNITS = lib.concatStringsSep " " reconcileUnits;
    SERVICES = lib.concatStringsSep " " ([ "cc-ci-runner" ] ++ lib.optionals (cfg.role == "server") [ "cc-ci-bridge" ]);
    RECONCILE_SECS = toString reconcileSecs;
  };
  status = pkgs.writeShellApplication {
    name = "cc-ci-status";
    runtimeInputs = [ config.systemd.package pkgs.coreutils pkgs.gnugrep pkgs.gawk ];
    text = lib.concatStrings (lib.mapAttrsToList (k: v: "${k}=${lib.escapeShellArg v}\n") statusEnvironment)
      + builtins.readFile ../scripts/common.sh + builtins.readFile ../scripts/status.sh;
  };
in
{
  options.services.cc-ci.swarm = {
    advertiseAddress = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "10.0.0.5";
      description = ''
        Address the swarm advertises (`docker swarm init --advertise-addr`). Null lets Docker
        pick the address of the default route's interface, which fails loudly when ambiguous.
      '';
    };

    reconcileInterval = mkOption {
      type = types.str;
      default = "30min";
      description = ''
        How often the reconcile chain (swarm, proxy network, abra servers, Traefik, Drone,
        dashboard service) is re-run to repair drift, as a systemd time span. Each unit acts
        only where the host differs from its declaration.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    # For the operator: what is converged, what waits and why (docs/install.md).
    environment.systemPackages = [ status ];

    virtualisation.docker = {
      enable = true;
      # dockerd refuses swarm mode while live-restore is on.
      liveRestore = false;
    };

    systemd.services.cc-ci-swarm = cclib.mkReconcileService {
      description = "cc-ci: this host is a single-node Docker swarm manager";
      script = cclib.reconcileScript "swarm" [ pkgs.docker pkgs.coreutils ];
      requires = [ "docker.service" ];
      environment = lib.optionalAttrs (cfg.swarm.advertiseAddress != null) {
        SWARM_ADVERTISE_ADDR = cfg.swarm.advertiseAddress;
      };
    };

    # The reconcile chain: every reconcile unit is part of this target (cclib.mkReconcileService).
    # Restarting it re-runs the units already converged and starts the others, in the order
    # their Requires= give.
    systemd.targets.cc-ci-reconcile.description = "cc-ci: the host matches its declaration";

    # Started by every boot and switch (multi-user.target wants it, and it is inactive between
    # runs, so switch-to-configuration starts it again) and by its timer. It returns at once, so
    # a switch never waits for a deploy; it then follows the chain and logs, unit by unit, what
    # converged, what waits and why, and what failed: `systemctl status cc-ci-reconcile`. A
    # switch that changes a reconcile unit restarts it (restartTriggers), so the chain re-runs
    # with the new definitions even while an earlier run is being followed.
    systemd.services.cc-ci-reconcile = {
      description = "cc-ci: re-run the reconcile chain and report it";
      wantedBy = [ "multi-user.target" ];
      # One element holding them all: the list itself then stays lazy in what it derives from.
      restartTriggers = [ (builtins.toJSON (map (n: { inherit (config.systemd.services.${n}) environment serviceConfig; }) reconcileUnits)) ];
      # The unit lists are in the script itself (cc-ci-status runs from a shell too).
      environment.UNIT_NAME = "cc-ci-reconcile";
      serviceConfig = cclib.reconcileHardening // {
        Type = "exec";
        ExecStart = "${lib.getExe status} --reconcile";
        RuntimeMaxSec = reconcileSecs + 60;
        RestrictAddressFamilies = [ "AF_UNIX" ];
      };
    };
    systemd.timers.cc-ci-reconcile = {
      description = "cc-ci: re-run the reconcile chain periodically";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = cfg.swarm.reconcileInterval;
        OnUnitInactiveSec = cfg.swarm.reconcileInterval;
      };
    };
  };
}
