# The secrets cc-ci needs, as paths of files that hold them. The module never decrypts anything
# itself: the host decides where the files come from (the cc-ci hosts use sops-nix,
# nix/hosts/common.nix; any tool that puts a root-only file on the host will do). Each unit
# receives the ones it needs through systemd's LoadCredential (a private, per-unit copy), so no
# secret is ever in the Nix store, in a command line, in an environment variable of a service,
# or readable by another user. Keys, their users and their rotation: docs/secrets.md.
{ config, lib, ... }:

let
  cfg = config.services.cc-ci;
  scfg = cfg.secrets;
  inherit (lib) mkOption types;
  isServer = cfg.role == "server";

  # A path on the host at run time; a Nix path literal would copy the secret into the
  # world-readable store, which the type refuses.
  secretPath = types.addCheck (types.strMatching "/.+") (p: !lib.hasPrefix "${builtins.storeDir}/" p) // {
    description = "absolute path outside the Nix store";
  };
  secretFile = what: mkOption {
    type = types.nullOr secretPath;
    default = null;
    example = "/run/secrets/cc-ci/${lib.toLower (lib.replaceStrings [ " " ] [ "-" ] what)}";
    description = "File holding ${what} (read by root when a unit starts; docs/secrets.md).";
  };

  # Which secrets each role needs, by option name.
  required = [ "droneRpcSecretFile" "wildcardCertFile" "wildcardKeyFile" ]
    ++ lib.optionals isServer [ "giteaTokenFile" "droneTokenFile" "giteaOauthClientIdFile" "giteaOauthClientSecretFile" ]
    ++ lib.optionals (!isServer) [ "resultsTokenFile" ];
  tokenNames = lib.attrNames scfg.runnerTokenFiles;
  missing = builtins.filter (n: scfg.${n} == null) required;
in
{
  options.services.cc-ci.secrets = {
    giteaTokenFile = secretFile "the bot's Gitea API token";
    droneTokenFile = secretFile "the bot's Drone API token";
    droneRpcSecretFile = secretFile "the RPC secret shared by Drone and its runners";
    giteaOauthClientIdFile = secretFile "the client id of Drone's OAuth application in Gitea";
    giteaOauthClientSecretFile = secretFile "the client secret of Drone's OAuth application in Gitea";
    wildcardCertFile = secretFile "the wildcard certificate (PEM, full chain)";
    wildcardKeyFile = secretFile "the wildcard certificate's private key (PEM)";

    resultsTokenFile = secretFile "this runner host's token for shipping results to the server";

    runnerTokenFiles = mkOption {
      type = types.attrsOf secretPath;
      default = { };
      example = { cc-ci-runner = "/run/secrets/cc-ci/runner-token-cc-ci-runner"; };
      description = ''
        The server: for each of `services.cc-ci.runnerHosts`, the file holding that host's
        results token (the same value as its `resultsTokenFile`). A token lets its host write
        results of its own builds only.
      '';
    };

    webhookSecretFiles = mkOption {
      type = types.listOf secretPath;
      default = [ ];
      example = [ "/run/secrets/cc-ci/webhook-secret" "/run/secrets/cc-ci/webhook-secret-next" ];
      description = ''
        Files holding the bridge's webhook secrets, each passed to the bridge as one of its
        `webhook_secret_files`. The bridge accepts a delivery signed with any of them, so a
        secret is rotated by adding the new one, switching Gitea's webhook to it, then removing
        the old one. Empty: the webhook endpoint is off and polling alone finds comments.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = missing == [ ];
        message = "services.cc-ci.secrets: a ${cfg.role} host needs ${lib.concatMapStringsSep ", " (n: "secrets.${n}") missing} (paths of files holding them; docs/secrets.md).";
      }
      {
        assertion = !isServer || lib.sort lib.lessThan tokenNames == lib.sort lib.lessThan cfg.runnerHosts;
        message = "services.cc-ci.secrets.runnerTokenFiles names ${builtins.toJSON tokenNames} but services.cc-ci.runnerHosts is ${builtins.toJSON cfg.runnerHosts}: the server needs one token per runner host, and none for any other.";
      }
      {
        assertion = isServer || cfg.resultsUrl != null;
        message = "services.cc-ci.resultsUrl: a runner host ships its runs' results to the server's bridge; set where it reaches it (docs/install.md, \"A second runner host\").";
      }
    ];
  };
}
