# The secrets cc-ci needs. sops-nix decrypts them at activation from the instance's secrets
# repository into root-only files under /run/secrets; each unit receives the ones it needs
# through systemd's LoadCredential (a private, per-unit copy), so no secret is ever in the Nix
# store, in a command line, in an environment variable of a service, or readable by another
# user. Keys, their users and their rotation: docs/secrets.md.
{ config, lib, ... }:

let
  cfg = config.services.cc-ci;
  inherit (lib) mkOption types literalExpression;
  isServer = cfg.role == "server";
  secret = restartUnits: { inherit (cfg.secrets) sopsFile; inherit restartUnits; };
in
{
  options.services.cc-ci.secrets = {
    sopsFile = mkOption {
      type = types.path;
      example = literalExpression ''"''${inputs.secrets}/cc-ci.yaml"'';
      description = ''
        The sops-encrypted YAML file with this host's cc-ci secrets, from the secrets repository
        (a flake input). Its keys are listed in docs/secrets.md; a runner-only host needs only
        `cc-ci/drone-rpc-secret` and its own wildcard certificate.
      '';
    };

    webhookSecrets = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "cc-ci/webhook-secret" "cc-ci/webhook-secret-next" ];
      description = ''
        Keys in the sops file of the bridge's webhook secrets, each passed to the bridge as one of
        its `webhook_secret_files`. The bridge accepts a delivery signed with any of them, so a
        secret is rotated by adding the new key, switching Gitea's webhook to it, then removing
        the old key. Empty: the webhook endpoint is off and polling alone finds comments.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    sops.secrets = {
      "cc-ci/drone-rpc-secret" = secret ([ "cc-ci-runner.service" ] ++ lib.optional isServer "cc-ci-drone.service");
      "cc-ci/wildcard-cert" = secret [ "cc-ci-proxy.service" ];
      "cc-ci/wildcard-key" = secret [ "cc-ci-proxy.service" ];
    } // lib.optionalAttrs isServer {
      "cc-ci/gitea-token" = secret [ "cc-ci-bridge.service" ];
      "cc-ci/drone-token" = secret [ "cc-ci-bridge.service" "cc-ci-drone-repo.service" ];
      "cc-ci/gitea-oauth-client-id" = secret [ "cc-ci-drone.service" ];
      "cc-ci/gitea-oauth-client-secret" = secret [ "cc-ci-drone.service" ];
    } // lib.genAttrs cfg.secrets.webhookSecrets (_: secret [ "cc-ci-bridge.service" ]);

    # drone-runner-exec reads its settings from the environment, or from the env file named on
    # its command line: the RPC secret reaches it in such a file, passed as a credential.
    sops.templates."cc-ci-runner.env" = {
      content = ''
        DRONE_RPC_SECRET=${config.sops.placeholder."cc-ci/drone-rpc-secret"}
      '';
      restartUnits = [ "cc-ci-runner.service" ];
    };

    # Drone creates the bot as its administrator on first start, with the token the bridge and
    # dashboard-gen use, so that no one has to copy a token out of Drone's UI.
    sops.templates."cc-ci-drone-user-create" = lib.mkIf isServer {
      content = "username:${cfg.botUser},admin:true,token:${config.sops.placeholder."cc-ci/drone-token"}";
      restartUnits = [ "cc-ci-drone.service" ];
    };
  };
}

