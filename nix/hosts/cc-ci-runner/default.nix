# A runner-only host of the cc-ci instance: its own swarm, Traefik, abra and test environment,
# and a Drone exec runner polling the instance's Drone. Its apps live under their own domain
# (DNS wildcard and certificate of their own), since each host routes only its own apps.
# Copy this directory for a third runner (another hostName, appDomain and secrets file).
{ config, lib, secrets, ... }:

let
  hardware = "${secrets}/hosts/cc-ci-runner/hardware-configuration.nix";
in
{
  imports = [ ../cc-ci/instance.nix ] ++ lib.optional (builtins.pathExists hardware) hardware;

  networking.hostName = "cc-ci-runner";
  nixpkgs.hostPlatform = "x86_64-linux";
  nixpkgs.config.allowUnfreePredicate = pkg: builtins.elem (lib.getName pkg) [ "drone-runner-exec" ];

  services.cc-ci = {
    role = "runner";
    # Under the instance's domain, so moving the instance moves this runner's apps too.
    appDomain = "r2.${config.services.cc-ci.domain}";
    secrets.sopsFile = "${secrets}/hosts/cc-ci-runner/secrets.yaml";
  };

  sops.age.keyFile = "/var/lib/sops-nix/key.txt";

  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
    };
  };

  nix.settings.experimental-features = [ "nix-command" "flakes" ];

  # The release the host was first installed with; never change it on an installed host.
  system.stateVersion = "26.05";
}
