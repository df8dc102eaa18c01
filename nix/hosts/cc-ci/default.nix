# The cc-ci host: Drone, the bridge, the dashboard and a runner, on one NixOS machine. Its
# hardware configuration and secrets come from the secrets repository (a flake input), so this
# repository holds nothing specific to one machine.
{ lib, secrets, ... }:

let
  hardware = "${secrets}/hosts/cc-ci/hardware-configuration.nix";
in
{
  imports = [ ./instance.nix ] ++ lib.optional (builtins.pathExists hardware) hardware;

  networking.hostName = "cc-ci";
  nixpkgs.hostPlatform = "x86_64-linux";

  # drone-runner-exec is source-available under the Polyform licences, unfree in nixpkgs' terms;
  # it is the only unfree package this host may install.
  nixpkgs.config.allowUnfreePredicate = pkg: builtins.elem (lib.getName pkg) [ "drone-runner-exec" ];

  services.cc-ci = {
    role = "server";
    secrets.sopsFile = "${secrets}/hosts/cc-ci/secrets.yaml";
  };

  # The age key that decrypts the secrets is the one thing put on the host by hand
  # (docs/install.md).
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
