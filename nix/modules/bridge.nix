# The bridge: turns `!testme` comments on enrolled recipes' pull requests into Drone builds and
# keeps the PR informed. Always on, polling Gitea; server role only.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  bcfg = cfg.bridge;
  cclib = import ../lib { inherit lib pkgs; };
  json = pkgs.formats.json { };
  inherit (lib) mkOption types literalExpression;
  unit = "cc-ci-bridge";
  credential = cclib.credentialPath unit;
  webhookCredentials = lib.imap1 (i: file: { name = "webhook-secret-${toString i}"; inherit file; }) cfg.secrets.webhookSecretFiles;
  runnerCredentials = lib.mapAttrsToList (name: file: { inherit name file; }) cfg.secrets.runnerTokenFiles;
  takesResults = runnerCredentials != [ ];
  resultsDir = "/var/lib/cc-ci-results";
  configFile = json.generate "bridge.json" bcfg.settings;
  # The re-test unit reads the same settings with its own credentials' paths (a unit sees only
  # its own under /run/credentials), and serves no webhook.
  retestCredential = cclib.credentialPath "cc-ci-retest";
  retestConfigFile = json.generate "bridge-retest.json" (bcfg.settings // {
    gitea_token_file = retestCredential "gitea-token";
    drone_token_file = retestCredential "drone-token";
    webhook_secret_files = [ ];
    runner_token_files = { };
    results_dir = null;
  });
  # Both units (the bridge and its re-test timer's) talk to Gitea and Drone as the bot.
  tokenCredentials = [
    "gitea-token:${cfg.secrets.giteaTokenFile}"
    "drone-token:${cfg.secrets.droneTokenFile}"
  ];
in
{
  options.services.cc-ci.bridge.settings = mkOption {
    type = types.submodule {
      freeformType = json.type;
      options = {
        gitea_url = mkOption {
          type = types.str;
          default = cfg.giteaUrl;
          defaultText = literalExpression "config.services.cc-ci.giteaUrl";
          description = "Gitea's root URL.";
        };
        bot_user = mkOption {
          type = types.str;
          default = cfg.botUser;
          defaultText = literalExpression "config.services.cc-ci.botUser";
          description = "The bot's login.";
        };
        gitea_token_file = mkOption {
          type = types.str;
          default = credential "gitea-token";
          readOnly = true;
          description = "The bot's Gitea token: the unit's credential, from the secrets repository.";
        };
        drone_url = mkOption {
          type = types.str;
          default = "https://${cfg.droneDomain}";
          defaultText = literalExpression ''"https://''${config.services.cc-ci.droneDomain}"'';
          description = "Drone's root URL.";
        };
        drone_token_file = mkOption {
          type = types.str;
          default = credential "drone-token";
          readOnly = true;
          description = "The bot's Drone token: the unit's credential, from the secrets repository.";
        };
        drone_repo = mkOption {
          type = types.str;
          default = cfg.droneRepository;
          defaultText = literalExpression "config.services.cc-ci.droneRepository";
          description = "The Drone repository whose pipeline runs the tests.";
        };
        drone_branch = mkOption {
          type = types.nullOr types.str;
          default = cfg.droneBranch;
          defaultText = literalExpression "config.services.cc-ci.droneBranch";
          description = "Its branch; null: Drone's default branch.";
        };
        recipes = mkOption {
          type = types.attrsOf types.str;
          default = cfg.recipes;
          defaultText = literalExpression "config.services.cc-ci.recipes";
          description = "Enrolled recipes → repositories.";
        };
        orgs = mkOption {
          type = types.listOf types.str;
          default = cfg.orgs;
          defaultText = literalExpression "config.services.cc-ci.orgs";
          description = "Members of these organisations may trigger runs.";
        };
        allow_users = mkOption {
          type = types.listOf types.str;
          default = cfg.allowUsers;
          defaultText = literalExpression "config.services.cc-ci.allowUsers";
          description = "These logins may trigger runs too.";
        };
        poll_interval_secs = mkOption {
          type = types.ints.between 1 3600;
          default = 15;
          description = "Seconds between fast polls (one Gitea request each).";
        };
        sweep_interval_secs = mkOption {
          type = types.ints.between 1 3600;
          default = 120;
          description = "Seconds between full sweeps of every enrolled repository; bounds how late a missed hint is found.";
        };
        follow_interval_secs = mkOption {
          type = types.ints.between 1 3600;
          default = 5;
          description = "Seconds between checks of the runs being followed in Drone (one request per run in flight).";
        };
        request_timeout_secs = mkOption {
          type = types.ints.between 1 3600;
          default = cfg.timeouts.request;
          defaultText = literalExpression "config.services.cc-ci.timeouts.request";
          description = "Timeout of every Gitea or Drone request.";
        };
        listen = mkOption {
          type = types.str;
          default = "127.0.0.1:8088";
          description = ''
            Address of `/hook`, `/healthz` and `/metrics`. To receive Gitea's webhooks, listen
            where Gitea can reach and open the port in the firewall; deliveries are checked
            against the webhook secrets.
          '';
        };
        webhook_secret_files = mkOption {
          type = types.listOf types.str;
          default = map (w: credential w.name) webhookCredentials;
          readOnly = true;
          description = "The webhook secrets (services.cc-ci.secrets.webhookSecretFiles) as the unit's credentials.";
        };
        results_dir = mkOption {
          type = types.nullOr types.str;
          default = if takesResults then resultsDir else null;
          defaultText = literalExpression ''"/var/lib/cc-ci-results" when services.cc-ci.runnerHosts is not empty, else null'';
          readOnly = true;
          description = "Where results shipped by the runner hosts are stored: the results directory dashboard-gen reads.";
        };
        runner_token_files = mkOption {
          type = types.attrsOf types.str;
          default = lib.mapAttrs (name: _: credential "runner-${name}") cfg.secrets.runnerTokenFiles;
          defaultText = literalExpression "one credential per services.cc-ci.secrets.runnerTokenFiles";
          readOnly = true;
          description = "Each runner host's results token (services.cc-ci.secrets.runnerTokenFiles) as the unit's credential.";
        };
        results_accept_secs = mkOption {
          type = types.ints.between 1 604800;
          default = 3600;
          description = "A build's results are taken until this many seconds after it finished (a retry after a network hiccup); later uploads are refused.";
        };
        state_dir = mkOption {
          type = types.str;
          default = "/var/lib/${unit}";
          readOnly = true;
          description = "The unit's state directory.";
        };
        dashboard_url = mkOption {
          type = types.str;
          default = "https://${cfg.domain}";
          defaultText = literalExpression ''"https://''${config.services.cc-ci.domain}"'';
          description = "The dashboard, linked from PR comments.";
        };
        status_context = mkOption {
          type = types.strMatching ".{1,255}";
          default = "cc-ci/testme";
          description = ''
            Context of the commit status set on each run's PR head. Needs the bot to have write
            access to the recipe's code and a token with `write:repository`; without them the
            bridge comments only (and says so once in its log).
          '';
        };
        retest_every_days = mkOption {
          type = types.ints.between 1 30;
          default = 1;
          description = "Scheduled re-tests: every enrolled recipe's default branch is tested once per slot of this many days.";
        };
        retest_unchanged_days = mkOption {
          type = types.ints.between 1 365;
          default = 7;
          description = "A default branch unchanged since its last green re-test is tested again only after this many days (the images under it may still move).";
        };
        retest_batch = mkOption {
          type = types.ints.between 1 1000;
          default = 4;
          description = "Re-tests started per firing of the cc-ci-retest timer.";
        };
        retest_queue_limit = mkOption {
          type = types.ints.between 1 100;
          default = 2;
          description = "No re-test starts while this many cc-ci builds are pending or running (keep it at the runners' capacity).";
        };
        retest_open_issues = mkOption {
          type = types.bool;
          default = false;
          description = "Open an issue on the recipe's repository when its re-test regresses (fails on the commit whose last re-test passed), once, and close it when a re-test passes again.";
        };
      };
    };
    default = { };
    description = ''
      Settings of cc-ci-bridge (`cc-ci-bridge --help` documents every key), written to
      /etc/cc-ci/bridge.json. Token and secret files are the unit's systemd credentials.
    '';
  };

  options.services.cc-ci.bridge.retest = {
    enable = mkOption {
      type = types.bool;
      default = true;
      description = "Re-test every enrolled recipe's default branch on a timer (cc-ci-retest.timer), without anyone commenting.";
    };
    onCalendar = mkOption {
      type = types.str;
      default = "*-*-* 00..06:00:00";
      description = ''
        When cc-ci-retest.timer fires (systemd.time(7)). Each firing starts at most
        `settings.retest_batch` due re-tests, so the default (hourly through the night) starts
        up to 7 × 4 recipes a night; a slot's recipes not reached are first in the next.
      '';
    };
  };

  config = lib.mkIf (cfg.enable && cfg.role == "server") {
    environment.etc."cc-ci/bridge.json".source = configFile;
    environment.etc."cc-ci/bridge-retest.json" = lib.mkIf bcfg.retest.enable { source = retestConfigFile; };

    systemd.services.cc-ci-retest = lib.mkIf bcfg.retest.enable {
      description = "cc-ci: start the scheduled re-tests that are due";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      serviceConfig = cclib.serviceHardening // {
        Type = "oneshot";
        # The bridge's dynamic user, so both units own the state directory.
        DynamicUser = true;
        User = unit;
        ExecStart = "${lib.getExe' cfg.package "cc-ci-bridge"} --config /etc/cc-ci/bridge-retest.json --retest";
        LoadCredential = tokenCredentials;
        StateDirectory = unit;
        StateDirectoryMode = "0700";
        TimeoutStartSec = "10min";
      };
    };

    systemd.timers.cc-ci-retest = lib.mkIf bcfg.retest.enable {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = bcfg.retest.onCalendar;
        Persistent = true;
        RandomizedDelaySec = "5min";
      };
    };

    systemd.services.${unit} = {
      description = "cc-ci: !testme bridge from Gitea to Drone";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartTriggers = [ configFile ];
      serviceConfig = cclib.serviceHardening // {
        DynamicUser = true;
        User = unit;
        ExecStart = "${lib.getExe' cfg.package "cc-ci-bridge"} --config /etc/cc-ci/bridge.json";
        LoadCredential = tokenCredentials ++ map (w: "${w.name}:${w.file}") webhookCredentials
          ++ map (r: "runner-${r.name}:${r.file}") runnerCredentials;
        StateDirectory = unit;
        StateDirectoryMode = "0700";
        Restart = "always";
        RestartSec = 5;
      } // lib.optionalAttrs takesResults {
        # Results shipped by the runner hosts land beside the local runner's (group-writable
        # for this reason, nix/modules/runner.nix).
        SupplementaryGroups = [ "cc-ci-results" ];
        ReadWritePaths = [ resultsDir ];
        UMask = "0027";
      } // {
        # Room for the bridge's 1,024 connections at once (server.rs MAX_CONNECTIONS) and its
        # own requests: systemd's default soft limit is 1,024.
        LimitNOFILE = 4096;
      };
    };
  };
}
