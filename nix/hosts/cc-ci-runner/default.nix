# A runner-only host of the cc-ci instance: its own swarm, Traefik, abra and test environment,
# and a Drone exec runner polling the instance's Drone. Its apps live under their own domain
# (DNS wildcard and certificate of their own), since each host routes only its own apps.
# Copy this directory for a third runner (another hostName and appDomain, and its own
# directory in the secrets repository).
{ config, ... }:

{
  imports = [ ../cc-ci/instance.nix (import ../common.nix "cc-ci-runner") ];

  networking.hostName = "cc-ci-runner";
  services.cc-ci = {
    role = "runner";
    # Under the instance's domain, so moving the instance moves this runner's apps too.
    appDomain = "r2.${config.services.cc-ci.domain}";
  };
}
