{
  description = "cc-ci: CI for Co-op Cloud recipes, and the NixOS host that runs it";

  inputs = {
    # The current stable release; its Rust must be at least the workspace's rust-version.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

    sops-nix = {
      url = "github:Mic92/sops-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    # The instance's private repository: sops-encrypted secrets (cc-ci.yaml, .sops.yaml) and the
    # host's hardware-configuration.nix. A second instance points this at its own:
    #   nixos-rebuild switch --flake .#cc-ci --override-input secrets git+ssh://…/other.git
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
        modules = [ self.nixosModules.default hostModule ];
      };
    in
    {
      packages.${system} = {
        default = self.packages.${system}.cc-ci;
        cc-ci = pkgs.callPackage ./nix/package.nix { };
        abra = pkgs.callPackage ./nix/abra.nix { };
      };

      # services.cc-ci, with sops-nix (the modules declare their secrets with it).
      nixosModules.default = {
        imports = [ sops-nix.nixosModules.sops ./nix/modules ];
      };

      nixosConfigurations = {
        # The instance: Drone, the bridge, the dashboard, and a runner.
        cc-ci = mkHost ./nix/hosts/cc-ci;
        # A runner-only host joining the instance's Drone (docs/install.md, "A second runner").
        cc-ci-runner = mkHost ./nix/hosts/cc-ci-runner;
      };

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

      checks.${system} = {
        package = self.packages.${system}.cc-ci;

        nix-format = pkgs.runCommand "cc-ci-nix-format"
          {
            nativeBuildInputs = [ pkgs.nixpkgs-fmt pkgs.deadnix pkgs.findutils ];
          } ''
          cd ${self}
          find . -name '*.nix' -print0 | xargs -0 nixpkgs-fmt --check
          find . -name '*.nix' -print0 | xargs -0 deadnix --fail
          touch "$out"
        '';

        reconcile-scripts = pkgs.runCommand "cc-ci-reconcile-scripts"
          {
            nativeBuildInputs = [ pkgs.shellcheck ];
          } ''
          cd ${./nix/scripts}
          for f in *.sh; do
            { echo '#!/usr/bin/env bash'; cat common.sh "$f"; } | shellcheck -s bash -
          done
          touch "$out"
        '';
      };
    };
}
