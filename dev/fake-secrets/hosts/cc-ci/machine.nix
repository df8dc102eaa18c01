# The machine, as an operator carries it over from the host's /etc/nixos (docs/install.md,
# "Carry the machine over"): everything here is what a blank install had and the flake
# would otherwise drop.
{
  imports = [ ./hardware-configuration.nix ];

  # From the host's configuration.nix: where GRUB is installed (or systemd-boot on UEFI).
  boot.loader.grub.device = "/dev/sda";

  services.cc-ci = {
    # Root's keys, from /root/.ssh/authorized_keys (a throwaway key here).
    adminKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake fake@cc-ci" ];
    network = "dhcp";
    # The instance's runner hosts, each shipping its results with its own token.
    runnerHosts = [ "cc-ci-runner" ];
  };

  # The release the host was first installed with; never change it on an installed host.
  system.stateVersion = "26.05";
}
