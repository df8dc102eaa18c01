# A runner machine with a static address and UEFI, to check that both shapes evaluate.
{
  imports = [ ./hardware-configuration.nix ];

  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = true;

  networking = {
    useDHCP = false;
    interfaces.ens3.ipv4.addresses = [{ address = "192.0.2.20"; prefixLength = 24; }];
    defaultGateway = "192.0.2.1";
    nameservers = [ "192.0.2.1" ];
  };

  services.cc-ci = {
    adminKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake fake@cc-ci" ];
    network = "static";
    droneAddress = "192.0.2.10";
    # The server's bridge on the hosts' shared network (its listen, opened to this host).
    resultsUrl = "http://192.0.2.10:8088";
  };

  system.stateVersion = "26.05";
}
