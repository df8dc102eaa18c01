{
  description = "cc-ci: CI for Co-op Cloud recipes, and the NixOS host that runs it";

  # Every host builds from the committed flake.lock (docs/install.md, "Lock the inputs"); the
  # self-test pipeline refuses to run without one.
  inputs = {
    # The current stable release; its Rust must be at least the workspace's rust-version.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

    sops-nix = {
      url = "github:Mic92/sops-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # The instance's private repository: per host, its machine file (machine.nix, with
    # hardware-configuration.nix) and its sops-encrypted secrets.yaml (docs/install.md). A
    # second instance changes this URL in its fork: an --override-input is not remembered by
    # the lock, and would have to be repeated at every switch. Checks without the real one:
    #   nix flake check --override-input secrets path:$PWD/dev/fake-secrets
    secrets = {
      url = "git+ssh://git@git.coopcloud.tech/coop-cloud/cc-ci-secrets.git";
      flake = false;
    };
  };

  outputs = { self, nixpkgs, sops-nix, secrets }:
    let
      inherit (nixpkgs) lib;
      # abra and drone-runner-exec are published for x86_64 Linux; so is cc-ci.
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};

      mkHost = hostModule: lib.nixosSystem {
        specialArgs = { inherit secrets; };
        modules = [ sops-nix.nixosModules.sops self.nixosModules.default hostModule ];
      };
      hosts = {
        # The instance: Drone, the bridge, the dashboard, and a runner.
        cc-ci = mkHost ./nix/hosts/cc-ci;
        # A runner-only host joining the instance's Drone (docs/install.md, "A second runner").
        cc-ci-runner = mkHost ./nix/hosts/cc-ci-runner;
      };
    in
    {
      packages.${system} = {
        default = self.packages.${system}.cc-ci;
        cc-ci = pkgs.callPackage ./nix/package.nix { };
        # The instance's abra: version and hash are instance settings (nix/hosts/cc-ci/instance.nix).
        abra = hosts.cc-ci.config.services.cc-ci.abra.package;
      };

      # services.cc-ci. Secrets are options holding file paths, so the module works with any
      # secrets tool; the hosts here wire sops-nix (nix/hosts/common.nix).
      nixosModules.default = ./nix/modules;

      nixosConfigurations = hosts;

      devShells.${system}.default = pkgs.mkShell {
        inputsFrom = [ self.packages.${system}.cc-ci ];
        packages = [
          pkgs.clippy
          pkgs.rustfmt
          pkgs.nixpkgs-fmt
          pkgs.deadnix
          pkgs.shellcheck
          pkgs.sops
          pkgs.age
          pkgs.ssh-to-age
          pkgs.chromium
          (pkgs.python3.withPackages (ps: [ ps.pytest ps.playwright ps.requests ]))
        ];
        CCCI_CHROMIUM = lib.getExe pkgs.chromium;
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = "1";
      };

      formatter.${system} = pkgs.nixpkgs-fmt;

      # `nix flake check` also evaluates both nixosConfigurations (every assertion of theirs):
      # run it with the fake secrets input, as the self-test pipeline does.
      checks.${system} = {
        package = self.packages.${system}.cc-ci;
        inherit (self.packages.${system}) abra;

        nix-format = pkgs.runCommand "cc-ci-nix-format"
          {
            nativeBuildInputs = [ pkgs.nixpkgs-fmt pkgs.deadnix pkgs.findutils ];
          } ''
          cd ${self}
          find . -name '*.nix' -print0 | xargs -0 nixpkgs-fmt --check
          find . -name '*.nix' -print0 | xargs -0 deadnix --fail
          touch "$out"
        '';

        # .drone.yml's concurrency.limit caps running builds across every runner: below the
        # total capacity (the server's and each of its runnerHosts'), runners idle while builds
        # queue. dev/nix-eval checks the same where nix cannot evaluate nixpkgs.
        concurrency =
          let
            m = builtins.match ".*\nconcurrency:\n  limit: ([0-9]+)\n.*" (builtins.readFile ./.drone.yml);
            limit = if m == null then throw ".drone.yml has no `concurrency:\n  limit: N`" else lib.toInt (builtins.head m);
            server = hosts.cc-ci.config.services.cc-ci;
            runners = lib.filter (h: lib.elem h.runner.name server.runnerHosts)
              (map (h: h.config.services.cc-ci) (lib.attrValues hosts));
            total = server.maxConcurrentTests + lib.foldl' (n: h: n + h.maxConcurrentTests) 0 runners;
          in
          assert lib.assertMsg (limit >= total)
            ".drone.yml's concurrency.limit (${toString limit}) is below the runners' total capacity (${toString total}: services.cc-ci.maxConcurrentTests of the server and of each of its runnerHosts); raise it (docs/install.md, \"A second runner host\").";
          pkgs.runCommand "cc-ci-concurrency" { } "touch $out";

        reconcile-scripts = pkgs.runCommand "cc-ci-reconcile-scripts"
          {
            nativeBuildInputs = [ pkgs.shellcheck ];
          } ''
          cd ${./nix/scripts}
          for f in *.sh; do
            [ "$f" != common.sh ] || continue
            # SC2317: a helper of common.sh that this script does not call is not dead code.
            { echo '#!/usr/bin/env bash'; cat common.sh "$f"; } | shellcheck -s bash -e SC2317 -
          done
          touch "$out"
        '';
      };
    };
}
