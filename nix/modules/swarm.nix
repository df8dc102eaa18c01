# Docker and the single-node swarm every Co-op Cloud app is deployed to, plus the periodic
# re-convergence of the whole reconcile chain.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  cclib = import ../lib { inherit lib pkgs; };
  inherit (lib) mkOption types;
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

    # Restarting cc-ci-swarm restarts every reconcile unit that Requires= it, in order. Wanted
    # by multi-user.target but not RemainAfterExit, this unit is inactive between runs: every
    # activation (switch-to-configuration starts the active targets again, which starts their
    # inactive wants) and every boot run it once more, so the host converges each time, not
    # only where a unit's definition changed. --no-block: the chain reports in its own units.
    systemd.services.cc-ci-reconcile = {
      description = "cc-ci: re-run the reconcile chain";
      wantedBy = [ "multi-user.target" ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${config.systemd.package}/bin/systemctl --no-block restart cc-ci-swarm.service";
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
