# The proxy: the swarm overlay network, and the Co-op Cloud `traefik` recipe deployed with abra,
# terminating TLS with the pre-issued wildcard certificate (no ACME: the host sits behind a
# gateway that passes TLS through, and the certificate comes from the secrets repository).
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  pcfg = cfg.proxy;
  cclib = import ../lib { inherit lib pkgs; };
  inherit (lib) mkOption types literalExpression;
  envValue = types.oneOf [ types.str types.int types.bool ];
in
{
  options.services.cc-ci.proxy = {
    domain = mkOption {
      type = types.str;
      default = "traefik.${cfg.appDomain}";
      defaultText = literalExpression ''"traefik.''${config.services.cc-ci.appDomain}"'';
      description = "The Traefik app's domain (its abra app name; the dashboard of Traefik itself stays off).";
    };

    recipeVersion = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "3.3.0+v3.3.5";
      description = ''
        The traefik recipe release to deploy (written to the app's .env as `TYPE=traefik:<version>`,
        which abra deploys). Null: the latest release when the app is first created, never
        upgraded by itself. Pin it; docs/install.md says how to list releases.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open TCP 80 and 443, where Traefik serves the dashboard, Drone and the apps, in the host's firewall.";
    };

    certificateVersion = mkOption {
      type = types.strMatching "v[0-9]+";
      default = "v1";
      description = ''
        Docker secret version of the wildcard certificate and key (`ssl_cert`, `ssl_key`).
        Docker secrets are immutable: after renewing the certificate in the secrets repository,
        bump this (v2, v3, …) so that the new one is inserted and Traefik redeployed.
      '';
    };

    # Each key below, and the secrets' names, with what confirms it in the real traefik recipe and
    # what nothing public confirmed: docs/install.md, "What the recipes' .env keys rest on".
    settings = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf envValue;
        options = {
          LETS_ENCRYPT_ENV = mkOption {
            type = envValue;
            default = "";
            description = "Empty: no ACME resolver; routers fall back to the wildcard certificate.";
          };
          WILDCARDS_ENABLED = mkOption {
            type = envValue;
            default = "1";
            description = "Serve the wildcard certificate from the `ssl_cert`/`ssl_key` secrets.";
          };
          COMPOSE_FILE = mkOption {
            type = envValue;
            default = "compose.yml:compose.wildcard.yml";
            description = "The recipe's compose files; `compose.wildcard.yml` mounts the certificate secrets.";
          };
        };
      };
      default = { };
      description = ''
        Entries of the Traefik app's .env (the recipe's `.env.sample` lists them). `TYPE`,
        `DOMAIN` and the secret versions are set by the module.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = lib.all cclib.envValueIsSafe (lib.attrValues pcfg.settings);
      message = "services.cc-ci.proxy.settings: values may not contain a single quote or a newline.";
    }];

    networking.firewall.allowedTCPPorts = lib.mkIf pcfg.openFirewall [ 80 443 ];

    systemd.services.cc-ci-proxy-network = cclib.mkReconcileService {
      description = "cc-ci: the swarm overlay network ${cfg.abra.network}";
      script = cclib.reconcileScript "network" [ pkgs.docker pkgs.coreutils ];
      requires = [ "cc-ci-swarm.service" ];
      environment.NETWORK_NAME = cfg.abra.network;
    };

    systemd.services.cc-ci-proxy = cclib.mkAbraApp {
      description = "cc-ci: Traefik (Co-op Cloud traefik recipe) with the wildcard certificate";
      inherit (cfg) abra;
      domain = pcfg.domain;
      recipe = "traefik";
      version = pcfg.recipeVersion;
      env = pcfg.settings;
      secrets = {
        # The recipe's secrets are ssl_cert and ssl_key; its .env.sample names their versions
        # SECRET_WILDCARD_CERT_VERSION and SECRET_WILDCARD_KEY_VERSION (docs/install.md,
        # "What the recipes' .env keys rest on").
        ssl_cert = { version = pcfg.certificateVersion; versionKey = "SECRET_WILDCARD_CERT_VERSION"; file = cfg.secrets.wildcardCertFile; };
        ssl_key = { version = pcfg.certificateVersion; versionKey = "SECRET_WILDCARD_KEY_VERSION"; file = cfg.secrets.wildcardKeyFile; };
      };
      requires = [ "cc-ci-proxy-network.service" "cc-ci-abra-server.service" ];
    };
  };
}
