# The Drone server: the Co-op Cloud `drone` recipe deployed with abra at `drone.<domain>`,
# logging in through Gitea (an OAuth application whose client id and secret are in the secrets
# repository), with the bot as its administrator; then the cc-ci repository activated in it with
# the declared build timeout. Server role only.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  dcfg = cfg.drone;
  cclib = import ../lib { inherit lib pkgs; };
  inherit (lib) mkOption types literalExpression;
  envValue = types.oneOf [ types.str types.int types.bool ];
  giteaHost = lib.removePrefix "http://" (lib.removePrefix "https://" cfg.giteaUrl);
in
{
  options.services.cc-ci.drone = {
    recipeVersion = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = ''
        The drone recipe release to deploy (`TYPE=drone:<version>` in the app's .env). Null: the
        latest release when the app is first created. Pin it (docs/install.md).
      '';
    };

    rpcSecretVersion = mkOption {
      type = types.strMatching "v[0-9]+";
      default = "v1";
      description = "Docker secret version of `rpc_secret`; bump it after rotating the RPC secret.";
    };

    clientSecretVersion = mkOption {
      type = types.strMatching "v[0-9]+";
      default = "v1";
      description = "Docker secret version of `client_secret` (the Gitea OAuth secret); bump it after rotating it.";
    };

    # Each key below, and the secrets' names, with what confirms it in the real drone recipe and
    # what nothing public confirmed: docs/install.md, "What the recipes' .env keys rest on".
    settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf envValue;
        options = {
          GITEA_DOMAIN = mkOption {
            type = envValue;
            default = giteaHost;
            defaultText = literalExpression "host of config.services.cc-ci.giteaUrl";
            description = "The Gitea Drone logs in through.";
          };
          COMPOSE_FILE = mkOption {
            type = envValue;
            default = "compose.yml:compose.gitea.yml";
            description = "The recipe's compose files; `compose.gitea.yml` wires the Gitea OAuth login.";
          };
          LETS_ENCRYPT_ENV = mkOption {
            type = envValue;
            default = "";
            description = "Empty: served with the proxy's wildcard certificate.";
          };
        };
      };
      default = { };
      description = ''
        Entries of the Drone app's .env (the recipe's `.env.sample` lists them). `TYPE`, `DOMAIN`,
        the secret versions, `GITEA_CLIENT_ID` and `DRONE_USER_CREATE` are set by the module, the
        last two from the secrets repository at run time.
      '';
    };
  };

  config = lib.mkIf (cfg.enable && cfg.role == "server") {
    assertions = [{
      assertion = lib.all cclib.envValueIsSafe (lib.attrValues dcfg.settings);
      message = "services.cc-ci.drone.settings: values may not contain a single quote or a newline.";
    }];

    systemd.services.cc-ci-drone = cclib.mkAbraApp {
      description = "cc-ci: Drone server (Co-op Cloud drone recipe) at ${cfg.droneDomain}";
      inherit (cfg) abra;
      domain = cfg.droneDomain;
      recipe = "drone";
      version = dcfg.recipeVersion;
      env = dcfg.settings;
      secrets = {
        rpc_secret = { version = dcfg.rpcSecretVersion; file = cfg.secrets.droneRpcSecretFile; };
        client_secret = { version = dcfg.clientSecretVersion; file = cfg.secrets.giteaOauthClientSecretFile; };
      };
      secretEnv = {
        GITEA_CLIENT_ID.file = cfg.secrets.giteaOauthClientIdFile;
        # Drone creates the bot as its administrator on first start, with the token the bridge
        # and dashboard-gen use, so that no one has to copy a token out of Drone's UI.
        DRONE_USER_CREATE = {
          file = cfg.secrets.droneTokenFile;
          template = "username:${cfg.botUser},admin:true,token:@value@";
        };
      };
      requires = [ "cc-ci-proxy.service" ];
    };

    systemd.services.cc-ci-drone-repo = cclib.mkReconcileService {
      description = "cc-ci: Drone builds ${cfg.droneRepository} with a ${toString cfg.timeouts.build} min timeout";
      script = cclib.reconcileScript "drone-repo" [ pkgs.curl pkgs.jq pkgs.coreutils ];
      requires = [ "cc-ci-drone.service" ];
      waits = true;
      environment = {
        DRONE_URL = "https://${cfg.droneDomain}";
        DRONE_REPO = cfg.droneRepository;
        DRONE_TIMEOUT_MINUTES = toString cfg.timeouts.build;
        BOT_USER = cfg.botUser;
        WAIT_SECS = "300";
      };
      serviceConfig = {
        DynamicUser = true;
        LoadCredential = [ "drone-token:${cfg.secrets.droneTokenFile}" ];
      };
    };
  };
}
