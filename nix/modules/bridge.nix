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
  webhookCredentials = lib.imap1 (i: key: { name = "webhook-secret-${toString i}"; inherit key; }) cfg.secrets.webhookSecrets;
  configFile = json.generate "bridge.json" bcfg.settings;
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
          description = "The webhook secrets (services.cc-ci.secrets.webhookSecrets) as the unit's credentials.";
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
      };
    };
    default = { };
    description = ''
      Settings of cc-ci-bridge (`cc-ci-bridge --help` documents every key), written to
      /etc/cc-ci/bridge.json. Token and secret files are the unit's systemd credentials.
    '';
  };

  config = lib.mkIf (cfg.enable && cfg.role == "server") {
    environment.etc."cc-ci/bridge.json".source = configFile;

    systemd.services.${unit} = {
      description = "cc-ci: !testme bridge from Gitea to Drone";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartTriggers = [ configFile ];
      serviceConfig = cclib.serviceHardening // {
        DynamicUser = true;
        ExecStart = "${lib.getExe' cfg.package "cc-ci-bridge"} --config /etc/cc-ci/bridge.json";
        LoadCredential = [
          "gitea-token:${config.sops.secrets."cc-ci/gitea-token".path}"
          "drone-token:${config.sops.secrets."cc-ci/drone-token".path}"
        ] ++ map (w: "${w.name}:${config.sops.secrets.${w.key}.path}") webhookCredentials;
        StateDirectory = unit;
        StateDirectoryMode = "0700";
        Restart = "always";
        RestartSec = 5;
        # Room for the bridge's 1,024 connections at once (server.rs MAX_CONNECTIONS) and its
        # own requests: systemd's default soft limit is 1,024.
        LimitNOFILE = 4096;
      };
    };
  };
}
