# The dashboard: cc-ci-dashboard-gen regenerates the static site from the Drone API and the run
# summaries on a timer, and a one-replica swarm service (a static file server, image built here)
# serves it through Traefik at the instance's domain. Server role only.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  dcfg = cfg.dashboard;
  cclib = import ../lib { inherit lib pkgs; };
  json = pkgs.formats.json { };
  inherit (lib) mkOption types literalExpression;
  unit = "cc-ci-dashboard-gen";
  stateDir = "/var/lib/cc-ci-dashboard";
  configFile = json.generate "dashboard-gen.json" dcfg.settings;

  port = 8787;
  image = pkgs.dockerTools.streamLayeredImage {
    name = "cc-ci-dashboard-web";
    # No tag: it is derived from the image's contents, so a changed image is loaded anew.
    config = {
      Entrypoint = [ (lib.getExe pkgs.static-web-server) ];
      # Overridden at run time by the owner of the site (cc-ci-dashboard-web).
      User = "65534:65534";
      ExposedPorts."${toString port}/tcp" = { };
    };
  };
in
{
  options.services.cc-ci.dashboard = {
    interval = mkOption {
      type = types.ints.positive;
      default = 5;
      description = "Minutes between two generations of the dashboard.";
    };

    settings = mkOption {
      type = types.submodule {
        freeformType = json.type;
        options = {
          drone_url = mkOption {
            type = types.str;
            default = "https://${cfg.droneDomain}";
            defaultText = literalExpression ''"https://''${config.services.cc-ci.droneDomain}"'';
            description = "Drone's root URL.";
          };
          drone_token_file = mkOption {
            type = types.str;
            default = cclib.credentialPath unit "drone-token";
            readOnly = true;
            description = "The bot's Drone token: the unit's credential.";
          };
          drone_repo = mkOption {
            type = types.str;
            default = cfg.droneRepository;
            defaultText = literalExpression "config.services.cc-ci.droneRepository";
            description = "The Drone repository whose builds are shown.";
          };
          gitea_url = mkOption {
            type = types.str;
            default = cfg.giteaUrl;
            defaultText = literalExpression "config.services.cc-ci.giteaUrl";
            description = "Gitea, for links to pull requests.";
          };
          recipes = mkOption {
            type = types.attrsOf types.str;
            default = cfg.recipes;
            defaultText = literalExpression "config.services.cc-ci.recipes";
            description = "Enrolled recipes (never-tested ones show as untested).";
          };
          results_dir = mkOption {
            type = types.str;
            default = cfg.stageRunner.settings.results_dir;
            defaultText = literalExpression "config.services.cc-ci.stageRunner.settings.results_dir";
            description = "Run summaries written by stage-runner.";
          };
          out_dir = mkOption {
            type = types.str;
            default = "${stateDir}/site";
            readOnly = true;
            description = "dashboard-gen's output: complete sites and the symlink `current` to the newest (served by cc-ci-dashboard-web).";
          };
          cache_dir = mkOption {
            type = types.str;
            default = "/var/cache/cc-ci-dashboard";
            readOnly = true;
            description = "Finished builds already fetched from Drone.";
          };
          site_url = mkOption {
            type = types.str;
            default = "https://${cfg.domain}";
            defaultText = literalExpression ''"https://''${config.services.cc-ci.domain}"'';
            description = "Where the site is served.";
          };
          history = mkOption {
            type = types.ints.positive;
            default = 50;
            description = "Runs shown per recipe page.";
          };
          max_pages = mkOption {
            type = types.ints.positive;
            default = 120;
            description = "Pages of 100 Drone builds read at most per generation.";
          };
          request_timeout_secs = mkOption {
            type = types.ints.positive;
            default = cfg.timeouts.request;
            defaultText = literalExpression "config.services.cc-ci.timeouts.request";
            description = "Timeout of every Drone request.";
          };
        };
      };
      default = { };
      description = ''
        Settings of cc-ci-dashboard-gen, written to /etc/cc-ci/dashboard-gen.json (no secrets in
        it). The documented keys are options; any other key the binary accepts may be added.
      '';
    };
  };

  config = lib.mkIf (cfg.enable && cfg.role == "server") {
    environment.etc."cc-ci/dashboard-gen.json".source = configFile;

    # A dedicated user rather than DynamicUser: the site's directory is also mounted into the
    # web service, which runs as this user, and must exist (tmpfiles) before the generator
    # first ran.
    users.users.cc-ci-dashboard = {
      isSystemUser = true;
      group = "cc-ci-dashboard";
      extraGroups = [ "cc-ci-results" ];
      description = "cc-ci dashboard generator";
    };
    users.groups.cc-ci-dashboard = { };
    systemd.tmpfiles.settings."10-cc-ci" = {
      ${stateDir}.d = {
        user = "cc-ci-dashboard";
        group = "cc-ci-dashboard";
        mode = "0700";
      };
      ${dcfg.settings.out_dir}.d = {
        user = "cc-ci-dashboard";
        group = "cc-ci-dashboard";
        mode = "0700";
      };
    };

    systemd.services.${unit} = {
      description = "cc-ci: generate the dashboard";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      restartTriggers = [ configFile ];
      serviceConfig = cclib.serviceHardening // {
        User = "cc-ci-dashboard";
        Group = "cc-ci-dashboard";
        # Reading the runs' results relies on the supplementary group cc-ci-results, which a
        # private user namespace would hide.
        PrivateUsers = false;
        Type = "oneshot";
        ExecStart = "${lib.getExe' cfg.package "cc-ci-dashboard-gen"} --config /etc/cc-ci/dashboard-gen.json";
        LoadCredential = [ "drone-token:${cfg.secrets.droneTokenFile}" ];
        SupplementaryGroups = [ "cc-ci-results" ];
        StateDirectory = "cc-ci-dashboard";
        StateDirectoryMode = "0700";
        CacheDirectory = "cc-ci-dashboard";
        CacheDirectoryMode = "0700";
        TimeoutStartSec = "10min";
      };
    };

    systemd.timers.${unit} = {
      description = "cc-ci: regenerate the dashboard every ${toString dcfg.interval} minutes";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "1min";
        OnUnitInactiveSec = "${toString dcfg.interval}min";
      };
    };

    systemd.services.cc-ci-dashboard-web = cclib.mkReconcileService {
      description = "cc-ci: serve the dashboard at ${cfg.domain} through Traefik";
      script = cclib.reconcileScript "dashboard-web" [ pkgs.docker pkgs.coreutils pkgs.gnused ];
      requires = [ "cc-ci-proxy.service" ];
      environment = {
        IMAGE_STREAM = "${image}";
        IMAGE_REF = "${image.imageName}:${image.imageTag}";
        SERVICE_NAME = "cc-ci-dashboard";
        NETWORK_NAME = cfg.abra.network;
        SITE_DIR = dcfg.settings.out_dir;
        # The file server runs as the generator's user, so the site stays private to it.
        SITE_USER = "cc-ci-dashboard";
        CURRENT = "current";
        DOMAIN = cfg.domain;
        ENTRYPOINT = "web-secure";
        PORT = toString port;
        CONVERGE_TIMEOUT = "120";
      };
      # Root without capabilities could not look into the generator's private directory.
      serviceConfig.CapabilityBoundingSet = [ "CAP_DAC_READ_SEARCH" ];
    };
  };
}
