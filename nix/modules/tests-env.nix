# What the recipe tests run with: this repository's tests/ (per-recipe tests and their harness),
# Python with pytest, Playwright and requests, and Chromium, all from nixpkgs. Playwright drives
# that Chromium (stage-runner passes its path as CCCI_CHROMIUM); it never downloads a browser.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  inherit (lib) mkOption types literalExpression;

  testsSource = lib.cleanSourceWith {
    name = "cc-ci-tests";
    src = ../../tests;
    filter = path: type: !(type == "directory" && baseNameOf path == "__pycache__");
  };

  interpreter = pkgs.python3.withPackages (ps: [ ps.pytest ps.playwright ps.requests ]);

  # The harness lives in tests/: put it on the interpreter's path whatever environment
  # stage-runner gives pytest.
  python = pkgs.runCommand "cc-ci-python"
    {
      nativeBuildInputs = [ pkgs.makeWrapper ];
      meta.mainProgram = "python";
    } ''
    makeWrapper ${interpreter}/bin/python3 "$out/bin/python" \
      --prefix PYTHONPATH : ${cfg.tests.directory} \
      --set PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD 1 \
      --set PYTHONDONTWRITEBYTECODE 1
  '';
in
{
  options.services.cc-ci.tests = {
    directory = mkOption {
      type = types.path;
      default = testsSource;
      defaultText = literalExpression "./tests";
      description = "The recipe tests (`tests/<recipe>/`, `ci.json`, the harness): stage-runner's `tests_dir`.";
    };

    python = mkOption {
      type = types.package;
      default = python;
      defaultText = literalExpression "python3 with pytest, playwright and requests, the tests on PYTHONPATH";
      description = "The Python the tests run with (`bin/python`).";
    };

    chromium = lib.mkPackageOption pkgs "chromium" {
      extraDescription = "The browser the tests drive through Playwright.";
    };
  };

  config = lib.mkIf cfg.enable {
    # For the operator and `cc-ci-stage-runner local`.
    environment.systemPackages = [ cfg.tests.python cfg.tests.chromium ];
  };
}
