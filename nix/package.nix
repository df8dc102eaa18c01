# The three cc-ci binaries (bridge, stage-runner, dashboard-gen), built from the Cargo workspace
# and its lock file. The workspace also holds the test stand-ins (`standin-*` and a fake `abra`);
# they are built only for tests and never installed: a host with a fake abra on PATH would be
# wrong in the worst way.
{ lib
, rustPlatform
}:

let
  workspace = lib.importTOML ../Cargo.toml;
  # Every workspace member must be present for cargo to resolve the workspace, the stand-ins
  # included; docs, benches, Python tests and the Nix files are not, so editing them does not
  # rebuild the binaries.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../rustfmt.toml
      ../ccci
      ../standins
      ../bridge
      ../stage-runner
      ../dashboard-gen
    ];
  };
  binaries = [ "cc-ci-bridge" "cc-ci-stage-runner" "cc-ci-dashboard-gen" ];
in
rustPlatform.buildRustPackage {
  pname = "cc-ci";
  inherit (workspace.workspace.package) version;
  inherit src;

  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = lib.concatMap (p: [ "-p" p ]) binaries;

  # Unit tests only. The integration tests drive the real binaries against the stand-ins, real
  # pytest and Chromium, and bind local ports; they run in the project's own CI (dev/test), not in
  # the build sandbox, which has neither the Python environment nor a browser.
  cargoTestFlags = [ "--workspace" "--lib" "--bins" ];

  # Belt and braces: nothing but the three binaries leaves the build.
  postInstall = ''
    for f in "$out"/bin/*; do
      case "$(basename "$f")" in
        ${lib.concatStringsSep "|" binaries}) ;;
        *) echo "removing $(basename "$f"): not a cc-ci host binary"; rm -f "$f" ;;
      esac
    done
  '';

  meta = {
    description = "CI for Co-op Cloud recipes: the !testme bridge, the Drone stage runner and the dashboard generator";
    homepage = "https://git.coopcloud.tech/coop-cloud/cc-ci";
    license = lib.licenses.agpl3Plus;
    mainProgram = "cc-ci-bridge";
    platforms = lib.platforms.linux;
  };
}
