# The janitor: `cc-ci-stage-runner janitor` on a timer, reaping every CI app, volume, secret and
# run directory whose run has ended or is older than the configured age (never the proxy,
# Drone or the dashboard, which live in another abra directory). Runs as the runner user.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  cclib = import ../lib { inherit lib pkgs; };
  inherit (lib) mkOption types;
in
{
  options.services.cc-ci.janitor = {
    maxAge = mkOption {
      type = types.ints.positive;
      default = 6 * 3600;
      description = ''
        Seconds after which whatever a run left is reaped even if its run looks alive
        (stage-runner's `janitor_max_age_secs`). Keep it above the longest build.
      '';
    };

    interval = mkOption {
      type = types.str;
      default = "hourly";
      description = "When the janitor runs (systemd calendar event).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = cfg.janitor.maxAge > cfg.timeouts.build * 60;
      message = "services.cc-ci.janitor.maxAge must exceed timeouts.build, or the janitor may reap a running build.";
    }];

    systemd.services.cc-ci-janitor = {
      description = "cc-ci: reap what ended or stale runs left behind";
      after = [ "docker.service" "cc-ci-runner-abra-server.service" ];
      requires = [ "docker.service" ];
      environment.HOME = "/var/lib/cc-ci-runner";
      serviceConfig = cclib.runnerSandbox { resultsDir = cfg.stageRunner.settings.results_dir; } // {
        Type = "oneshot";
        ExecStart = "${lib.getExe' cfg.package "cc-ci-stage-runner"} janitor --config /etc/cc-ci/stage-runner.json";
        TimeoutStartSec = "30min";
      };
    };

    systemd.timers.cc-ci-janitor = {
      description = "cc-ci: run the janitor";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.janitor.interval;
        Persistent = true;
        RandomizedDelaySec = "5min";
      };
    };
  };
}
