# What both cc-ci hosts (the server, ./cc-ci, and a runner, ./cc-ci-runner) share: the machine
# file from the secrets repository, the secrets decrypted by sops-nix and handed to the module
# as files, SSH, and flakes. `host` is the host's directory name in the secrets repository.
host:
{ config, lib, secrets, ... }:

let
  cfg = config.services.cc-ci;
  dir = "${secrets}/hosts/${host}";
  # The machine itself, which this repository cannot know: its hardware, boot loader, network,
  # admin keys and first release. A missing one is an error naming it, not a silently skipped
  # import that surfaces later as an unrelated fileSystems assertion.
  machine = "${dir}/machine.nix";
  isServer = cfg.role == "server";
  path = key: config.sops.secrets."cc-ci/${key}".path;
  # Keys of webhook secrets, oldest first; empty: no webhook endpoint (docs/secrets.md).
  webhookKeys = [ ];
in
{
  imports = [
    (if builtins.pathExists machine then machine else
    throw "cc-ci: ${host}'s machine file is missing: the secrets repository needs hosts/${host}/machine.nix (its hardware, boot loader, network, admin keys and stateVersion; docs/install.md, \"Carry the machine over\"). Looked for: ${machine}")
  ];

  nixpkgs.hostPlatform = "x86_64-linux";
  # drone-runner-exec is source-available under the Polyform licences, unfree in nixpkgs' terms;
  # it is the only unfree package these hosts may install.
  nixpkgs.config.allowUnfreePredicate = pkg: builtins.elem (lib.getName pkg) [ "drone-runner-exec" ];

  sops = {
    defaultSopsFile = "${dir}/secrets.yaml";
    # The age key that decrypts the secrets is the one thing put on the host by hand.
    age.keyFile = "/var/lib/sops-nix/key.txt";
    # A changed secret restarts the bridge (sops-nix's restartUnits). The reconcile units and the
    # runner are left out: they pick it up when the chain re-runs after the switch (the runner
    # once idle), so no switch waits on a deploy.
    secrets = lib.mkMerge [
      {
        "cc-ci/drone-rpc-secret" = { };
        "cc-ci/wildcard-cert" = { };
        "cc-ci/wildcard-key" = { };
      }
      (lib.mkIf isServer ({
        "cc-ci/gitea-token".restartUnits = [ "cc-ci-bridge.service" ];
        "cc-ci/drone-token".restartUnits = [ "cc-ci-bridge.service" ];
        "cc-ci/gitea-oauth-client-id" = { };
        "cc-ci/gitea-oauth-client-secret" = { };
      } // lib.genAttrs (map (k: "cc-ci/${k}") webhookKeys) (_: { restartUnits = [ "cc-ci-bridge.service" ]; })
      // lib.genAttrs (map (h: "cc-ci/runner-token-${h}") cfg.runnerHosts) (_: { restartUnits = [ "cc-ci-bridge.service" ]; })))
      (lib.mkIf (!isServer) { "cc-ci/results-token" = { }; })
    ];
  };

  services.cc-ci.secrets = {
    droneRpcSecretFile = path "drone-rpc-secret";
    wildcardCertFile = path "wildcard-cert";
    wildcardKeyFile = path "wildcard-key";
    giteaTokenFile = lib.mkIf isServer (path "gitea-token");
    droneTokenFile = lib.mkIf isServer (path "drone-token");
    giteaOauthClientIdFile = lib.mkIf isServer (path "gitea-oauth-client-id");
    giteaOauthClientSecretFile = lib.mkIf isServer (path "gitea-oauth-client-secret");
    webhookSecretFiles = lib.mkIf isServer (map path webhookKeys);
    runnerTokenFiles = lib.mkIf isServer (lib.genAttrs cfg.runnerHosts (h: path "runner-token-${h}"));
    resultsTokenFile = lib.mkIf (!isServer) (path "results-token");
  };

  services.cc-ci.proxy.openFirewall = true;

  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
    };
  };

  nix.settings.experimental-features = [ "nix-command" "flakes" ];
}
