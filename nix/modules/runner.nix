# The Drone exec runner and what its pipeline steps run: cc-ci-stage-runner with its config file
# at /etc/cc-ci/stage-runner.json (the path .drone.yml names), its own abra directory registered
# with the local swarm, and the results directory dashboard-gen reads.
#
# Why the runner is less confined than the other services: its steps deploy real apps, so the
# runner user is in the `docker` group, which is root-equivalent on this host; its steps run
# Chromium, whose own sandbox needs user namespaces and a JIT (no RestrictNamespaces,
# PrivateUsers or MemoryDenyWriteExecute), plus Python, git and abra (a syscall deny-list rather
# than an allow-list). What keeps it honest instead: it runs only pipelines of the cc-ci
# repository (DRONE_LIMIT_REPOS), never a recipe's; it has a dedicated user, no capabilities,
# a read-only system outside its state and results directories, and it stays on this host.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.cc-ci;
  rcfg = cfg.runner;
  cclib = import ../lib { inherit lib pkgs; };
  json = pkgs.formats.json { };
  inherit (lib) mkOption types literalExpression;

  stateDir = "/var/lib/cc-ci-runner";
  resultsDir = "/var/lib/cc-ci-results";
  stageRunnerConfig = json.generate "stage-runner.json" cfg.stageRunner.settings;
  isServer = cfg.role == "server";
  # The server's bridge writes the runner hosts' shipped results beside this runner's.
  bridgeWritesResults = isServer && cfg.runnerHosts != [ ];

  # Drone's exec runner hands its steps only PATH (DRONE_RUNNER_PATH) and USER from the host.
  stepPackages = [
    cfg.package
    cfg.abra.package
    cfg.tests.python
    cfg.tests.chromium
    pkgs.docker
    pkgs.git
    pkgs.bash
    pkgs.coreutils
    pkgs.findutils
    pkgs.gnugrep
    pkgs.gnused
    pkgs.gnutar
    pkgs.gzip
    pkgs.util-linux
    pkgs.procps
    pkgs.curl
    # The self-test pipeline runs `nix develop`.
    config.nix.package
  ] ++ rcfg.extraPackages;

  # What steps find in their environment besides PATH (DRONE_RUNNER_ENVIRON). .drone.yml's steps
  # read their config's path from CCCI_CONFIG.
  stepEnvironment = {
    CCCI_CONFIG = "/etc/cc-ci/stage-runner.json";
    SSL_CERT_FILE = "/etc/ssl/certs/ca-certificates.crt";
    GIT_SSL_CAINFO = "/etc/ssl/certs/ca-certificates.crt";
    LANG = "C.UTF-8";
  } // rcfg.stepEnvironment;

  sandbox = cclib.runnerSandbox { inherit resultsDir; };

  # Writes the runner's env file and generation, then runs it (nix/scripts/runner-start.sh).
  runnerStart = pkgs.writeShellApplication {
    name = "cc-ci-runner-start";
    runtimeInputs = [ pkgs.coreutils ];
    text = "RUNNER_EXE=${lib.escapeShellArg (lib.getExe rcfg.package)}\n"
      + builtins.readFile ../scripts/common.sh + builtins.readFile ../scripts/runner-start.sh;
  };
in
{
  options.services.cc-ci.runner = {
    package = lib.mkPackageOption pkgs "drone-runner-exec" {
      extraDescription = ''
        Its licence (Polyform Small Business / Free Trial) is unfree in nixpkgs' terms: allow it
        explicitly with `nixpkgs.config.allowUnfreePredicate`, as the cc-ci host configurations do.
      '';
    };

    name = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = literalExpression "config.networking.hostName";
      description = "`DRONE_RUNNER_NAME`: shown in Drone as the machine a build ran on.";
    };

    labels = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "`DRONE_RUNNER_LABELS`: a pipeline with `node:` labels runs only on runners with exactly these.";
    };

    extraPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "More programs on the PATH of pipeline steps.";
    };

    stepEnvironment = mkOption {
      type = types.attrsOf (types.strMatching "[^,]*");
      default = { };
      description = ''
        More environment variables for pipeline steps (`DRONE_RUNNER_ENVIRON`; values may not
        hold a comma). Steps get only these, PATH and Drone's own variables.
      '';
    };

    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = { DRONE_DEBUG = "true"; };
      description = ''
        More runner settings (the `DRONE_*` variables of drone-runner-exec's daemon/config.go);
        they override the module's. Never put the RPC secret here: it comes from the secrets
        repository.
      '';
    };
  };

  options.services.cc-ci.stageRunner.settings = mkOption {
    type = types.submodule {
      freeformType = json.type;
      options = {
        server = mkOption {
          type = types.str;
          default = "default";
          description = "abra server the apps are deployed to: the local swarm.";
        };
        base_domain = mkOption {
          type = types.str;
          default = cfg.appDomain;
          defaultText = literalExpression "config.services.cc-ci.appDomain";
          description = "Apps under test get domains under it.";
        };
        scheme = mkOption {
          type = types.enum [ "https" "http" ];
          default = "https";
          description = "How the tests reach the apps (through Traefik, with the wildcard certificate).";
        };
        state_dir = mkOption {
          type = types.str;
          default = "${stateDir}/state";
          description = "Per-run state (run directories, mode 0700).";
        };
        results_dir = mkOption {
          type = types.str;
          default = resultsDir;
          description = "Run summaries and artifacts, read by dashboard-gen.";
        };
        abra_dir = mkOption {
          type = types.str;
          default = "${stateDir}/abra";
          description = "The runner's own ABRA_DIR (its servers/ are shared by the runs).";
        };
        abra = mkOption {
          type = types.str;
          default = lib.getExe cfg.abra.package;
          defaultText = literalExpression "lib.getExe config.services.cc-ci.abra.package";
          description = "The abra executable.";
        };
        tests_dir = mkOption {
          type = types.str;
          default = "${cfg.tests.directory}";
          defaultText = literalExpression "config.services.cc-ci.tests.directory";
          description = "The recipe tests (`tests/<recipe>/`).";
        };
        python = mkOption {
          type = types.str;
          default = "${cfg.tests.python}/bin/python";
          defaultText = literalExpression ''"''${config.services.cc-ci.tests.python}/bin/python"'';
          description = "Python with pytest, Playwright and requests.";
        };
        chromium = mkOption {
          type = types.str;
          default = lib.getExe cfg.tests.chromium;
          defaultText = literalExpression "lib.getExe config.services.cc-ci.tests.chromium";
          description = "The browser the tests drive.";
        };
        deploy_timeout_secs = mkOption {
          type = types.ints.positive;
          default = cfg.timeouts.deploy;
          defaultText = literalExpression "config.services.cc-ci.timeouts.deploy";
          description = "See services.cc-ci.timeouts.deploy.";
        };
        command_timeout_secs = mkOption {
          type = types.ints.positive;
          default = cfg.timeouts.command;
          defaultText = literalExpression "config.services.cc-ci.timeouts.command";
          description = "See services.cc-ci.timeouts.command.";
        };
        tls_verify = mkOption {
          type = types.bool;
          default = true;
          description = "Whether the tests verify the apps' certificates (the wildcard certificate is a real one).";
        };
        janitor_max_age_secs = mkOption {
          type = types.ints.positive;
          default = cfg.janitor.maxAge;
          defaultText = literalExpression "config.services.cc-ci.janitor.maxAge";
          description = "See services.cc-ci.janitor.maxAge.";
        };
        allowed_src = mkOption {
          type = types.listOf types.str;
          default = [ "${cfg.giteaUrl}/" ];
          defaultText = literalExpression ''[ "''${config.services.cc-ci.giteaUrl}/" ]'';
          description = "Where a pull request's source repository may be fetched from: same scheme and host, and these leading path segments (compared as URL parts, not as text).";
        };
        recipes = mkOption {
          type = types.listOf (types.strMatching "[a-z][a-z0-9-]*");
          default = lib.attrNames cfg.recipes;
          defaultText = literalExpression "lib.attrNames config.services.cc-ci.recipes";
          description = "The recipes this host tests: the enrolled list, from `services.cc-ci.recipes`.";
        };
        run_deadline_secs = mkOption {
          type = types.ints.positive;
          default = cfg.timeouts.run * 60;
          defaultText = literalExpression "config.services.cc-ci.timeouts.run * 60";
          description = "See services.cc-ci.timeouts.run.";
        };
        resolve = mkOption {
          type = types.nullOr types.str;
          default = "*.${cfg.appDomain}=127.0.0.1";
          defaultText = literalExpression ''"*.''${config.services.cc-ci.appDomain}=127.0.0.1"'';
          description = ''
            Where the tests reach the apps: this host's own Traefik. Their public names resolve
            to the gateway in front of the host, which few gateways route back in (hairpin NAT).
          '';
        };
        abra_env = mkOption {
          type = types.attrsOf types.str;
          default = { };
          description = "Extra environment for abra and the engine questions stage-runner asks beside it (e.g. `DOCKER_HOST`); empty on a host whose engine is the default one.";
        };
        results_url = mkOption {
          type = types.nullOr types.str;
          default = if isServer then null else cfg.resultsUrl;
          defaultText = literalExpression "null on the server, services.cc-ci.resultsUrl on a runner host";
          description = "Where each stage ships the run's results (the server's bridge); null on the server, whose dashboard reads `results_dir` itself.";
        };
        results_token_file = mkOption {
          type = types.nullOr types.str;
          default = if isServer then null else cclib.credentialPath "cc-ci-runner" "results-token";
          defaultText = literalExpression "the runner unit's credential results-token, on a runner host";
          readOnly = true;
          description = "This host's results token (services.cc-ci.secrets.resultsTokenFile), as the runner unit's credential its steps read.";
        };
        trusted_recipes = mkOption {
          type = types.listOf (types.strMatching "[a-z][a-z0-9-]*");
          default = [ ];
          example = [ "custom-html" ];
          description = ''
            Recipes whose own `tests/` may run on this host. That code comes with each pull
            request and runs as the runner's user, which can reach the docker socket: name only
            recipes whose maintainers you trust. Empty by default; no wildcard. Other recipes'
            recipe-tests stage is a declared skip saying why.
          '';
        };
      };
    };
    default = { };
    description = ''
      Settings of cc-ci-stage-runner (`cc-ci-stage-runner --help` documents every key), written
      to /etc/cc-ci/stage-runner.json, the path .drone.yml's steps name; no secrets in it. The
      binary rejects unknown keys.
    '';
  };

  config = lib.mkIf cfg.enable {
    users.users.cc-ci-runner = {
      isSystemUser = true;
      group = "cc-ci-runner";
      extraGroups = [ "docker" ];
      home = stateDir;
      description = "cc-ci Drone exec runner";
    };
    users.groups.cc-ci-runner = { };
    # Readers of the results directory (dashboard-gen).
    users.groups.cc-ci-results = { };

    systemd.tmpfiles.settings."10-cc-ci".${resultsDir}.d = {
      user = "cc-ci-runner";
      group = "cc-ci-results";
      mode = if bridgeWritesResults then "2770" else "2750";
    };

    environment.etc."cc-ci/stage-runner.json".source = stageRunnerConfig;
    # For the operator: `cc-ci-stage-runner janitor --config /etc/cc-ci/stage-runner.json`, …
    environment.systemPackages = [ cfg.package ];

    systemd.services.cc-ci-runner-abra-server = cclib.mkReconcileService {
      description = "cc-ci: the runner's abra knows the local swarm as server 'default'";
      script = cclib.reconcileScript "abra-server" [ cfg.abra.package pkgs.docker pkgs.coreutils ];
      requires = [ "cc-ci-swarm.service" ];
      environment = {
        UNIT_NAME = "cc-ci-runner-abra-server";
        ABRA_DIR = cfg.stageRunner.settings.abra_dir;
        HOME = stateDir;
      };
      serviceConfig = cclib.runnerUser;
    };

    systemd.services.cc-ci-runner = {
      description = "cc-ci: Drone exec runner (${toString cfg.maxConcurrentTests} concurrent runs)";
      wantedBy = [ "multi-user.target" ];
      # Wants=, not Requires=: re-running the reconcile chain must not restart the runner and
      # kill the builds it is running.
      wants = [ "network-online.target" "cc-ci-runner-abra-server.service" "cc-ci-proxy.service" ];
      # A switch must not kill the builds it runs: cc-ci-runner-update restarts it once idle.
      restartIfChanged = false;
      after = [ "network-online.target" "docker.service" "cc-ci-runner-abra-server.service" "cc-ci-proxy.service" ];
      environment = {
        DRONE_RPC_PROTO = "https";
        DRONE_RPC_HOST = cfg.droneDomain;
        DRONE_RUNNER_NAME = rcfg.name;
        DRONE_RUNNER_CAPACITY = toString cfg.maxConcurrentTests;
        DRONE_RUNNER_PATH = lib.makeBinPath stepPackages;
        DRONE_RUNNER_ROOT = "${stateDir}/work";
        DRONE_RUNNER_ENVIRON = lib.concatStringsSep "," (lib.mapAttrsToList (k: v: "${k}:${v}") stepEnvironment);
        # Only this repository's pipelines run here: the runner is root-equivalent.
        DRONE_LIMIT_REPOS = cfg.droneRepository;
        DRONE_LIMIT_EVENTS = "custom,push";
        DRONE_HTTP_BIND = "127.0.0.1:3000";
        DRONE_UI_DISABLE = "true";
      } // lib.optionalAttrs (rcfg.labels != { }) {
        DRONE_RUNNER_LABELS = lib.concatStringsSep "," (lib.mapAttrsToList (k: v: "${k}:${v}") rcfg.labels);
      } // rcfg.environment;

      serviceConfig = sandbox // {
        ExecStart = lib.getExe runnerStart;
        LoadCredential = [ "rpc-secret:${cfg.secrets.droneRpcSecretFile}" ]
          ++ lib.optional (!isServer) "results-token:${cfg.secrets.resultsTokenFile}";
        RuntimeDirectory = "cc-ci-runner";
        RuntimeDirectoryMode = "0700";
        Restart = "always";
        RestartSec = 10;
        # A stop (shutdown, cc-ci-runner-update) sends SIGTERM to every process of the unit:
        # stage-runner tears its run down on SIGTERM, which may take minutes.
        TimeoutStopSec = "10min";
      };
    };

    # The runner's unit holds store paths (its PATH, the binaries), so every cc-ci update
    # changes it; restarting it then would cancel the builds it runs. This unit, re-run with the
    # reconcile chain after every switch, restarts it only once its definition or RPC secret
    # changed and no build is in flight, waiting at most as long as Drone lets a build run.
    systemd.services.cc-ci-runner-update = cclib.mkReconcileService {
      description = "cc-ci: the runner runs its current definition (restarted when idle)";
      script = cclib.reconcileScript "runner-update" [ config.systemd.package pkgs.coreutils pkgs.findutils ];
      timeout = cfg.timeouts.build * 60;
      # After what the runner's builds need, so that it restarts into a converged host.
      wants = [ "cc-ci-runner-abra-server.service" "cc-ci-proxy.service" ];
      environment = {
        RUNNER_UNIT = "cc-ci-runner.service";
        RUNS_DIR = "${cfg.stageRunner.settings.state_dir}/runs";
        DRAIN_SECS = toString (cfg.timeouts.build * 60);
      };
      serviceConfig = {
        LoadCredential = [ "rpc-secret:${cfg.secrets.droneRpcSecretFile}" ]
          ++ lib.optional (!isServer) "results-token:${cfg.secrets.resultsTokenFile}";
        # Root without capabilities could not look into the runner's private directories.
        CapabilityBoundingSet = [ "CAP_DAC_READ_SEARCH" ];
        RestrictAddressFamilies = [ "AF_UNIX" ];
      };
    };
  };
}
