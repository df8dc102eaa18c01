# The cc-ci instance's settings, shared by its server (./default.nix) and its extra runners
# (../cc-ci-runner). Everything a maintainer changes to enrol a recipe or repoint the instance
# is here.
{
  services.cc-ci = {
    enable = true;

    domain = "ci.coopcloud.tech";
    giteaUrl = "https://git.coopcloud.tech";
    botUser = "cc-ci-bot";
    orgs = [ "coop-cloud" ];
    allowUsers = [ ];
    droneRepository = "coop-cloud/cc-ci";

    # Enrolled recipes: recipe → its Gitea repository. Listing one here is all it takes; a
    # tests/<recipe>/ in this repository adds checks to the generic ones (docs/enroll-recipe.md).
    recipes = {
      custom-html = "coop-cloud/custom-html";
    };

    maxConcurrentTests = 2;
    timeouts = {
      deploy = 900;
      command = 1800;
      build = 180;
    };
    dashboard.interval = 5;
    janitor.maxAge = 6 * 3600;

    # abra's release binary: its hash is computed at install (docs/install.md, "Pin abra");
    # until it is set, the hosts refuse to build and print the command that computes it.
    #   abra.hash = "sha256-…";

    # Pin the infrastructure recipes once you have picked releases (docs/install.md):
    #   proxy.recipeVersion = "<traefik release>";
    #   drone.recipeVersion = "<drone release>";
  };
}
