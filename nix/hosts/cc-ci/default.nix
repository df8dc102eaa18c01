# The cc-ci host: Drone, the bridge, the dashboard and a runner, on one NixOS machine. The
# machine itself (hardware, boot loader, network, admin keys) and the secrets come from the
# secrets repository (a flake input), so this repository holds nothing specific to one machine.
{
  imports = [ ./instance.nix (import ../common.nix "cc-ci") ];

  networking.hostName = "cc-ci";
  services.cc-ci.role = "server";
}
