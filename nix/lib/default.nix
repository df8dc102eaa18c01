# What the cc-ci modules share: where systemd hands a unit its credentials, the sandboxing the
# services start from, the reconcile oneshots built from nix/scripts, and abra apps as units.
{ lib, pkgs }:

let
  inherit (lib) concatStringsSep mapAttrsToList;
in
rec {
  # systemd's $CREDENTIALS_DIRECTORY for a service: the binaries are pointed at token files here,
  # so secrets never pass through the Nix store, argv or the environment.
  credentialPath = unit: name: "/run/credentials/${unit}.service/${name}";

  # What every cc-ci unit's sandbox has: no new privileges or capabilities, a read-only
  # system, a private /tmp, no kernel or clock changes, native syscalls only.
  baseHardening = {
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    CapabilityBoundingSet = "";
    SystemCallArchitectures = "native";
  };

  # The sandbox of a long-running cc-ci service that needs nothing but the network and its own
  # state (the bridge, dashboard-gen). Units extend it with their state directories.
  serviceHardening = baseHardening // {
    UMask = "0077";
    PrivateDevices = true;
    PrivateUsers = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
    RestrictNamespaces = true;
    MemoryDenyWriteExecute = true;
    RemoveIPC = true;
    AmbientCapabilities = "";
    DevicePolicy = "closed";
    SystemCallFilter = [ "@system-service" "~@privileged" "~@resources" ];
    SystemCallErrorNumber = "EPERM";
  };

  # The sandbox of the reconcile oneshots. They run as root because they drive the Docker
  # socket and abra's state; they get no capabilities, a read-only system, and only the
  # syscalls of an ordinary service.
  reconcileHardening = baseHardening // {
    UMask = "0077";
    RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
    RestrictNamespaces = true;
    SystemCallFilter = [ "@system-service" ];
  };

  # The user the runner, its steps and the janitor run as, with its state directories.
  runnerUser = {
    User = "cc-ci-runner";
    Group = "cc-ci-runner";
    SupplementaryGroups = [ "docker" ];
    StateDirectory = [ "cc-ci-runner" "cc-ci-runner/work" "cc-ci-runner/state" "cc-ci-runner/abra" ];
    StateDirectoryMode = "0750";
  };

  # The sandbox of everything that runs as the runner user (the runner, its steps, the janitor);
  # nix/modules/runner.nix says why it is looser than serviceHardening.
  runnerSandbox = { resultsDir }: baseHardening // runnerUser // {
    ReadWritePaths = [ resultsDir ];
    # Run directories are 0700 (stage-runner); results are group-readable for dashboard-gen.
    UMask = "0027";
    PrivateDevices = true;
    RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
    SystemCallFilter = [ "~@clock" "~@cpu-emulation" "~@module" "~@obsolete" "~@raw-io" "~@reboot" "~@swap" ];
  };

  # One reconcile script: nix/scripts/common.sh followed by nix/scripts/<name>.sh, shellchecked
  # when built.
  reconcileScript = name: runtimeInputs: pkgs.writeShellApplication {
    name = "cc-ci-${name}";
    inherit runtimeInputs;
    text = builtins.readFile ../scripts/common.sh + builtins.readFile (../scripts + "/${name}.sh");
  };

  # A reconcile unit: a oneshot that stays active once the host matches its declaration, so that
  # dependents are ordered after it. Every one is part of cc-ci-reconcile.target, which
  # cc-ci-reconcile.service restarts in the background after every boot and switch and on its
  # timer: a switch never waits for a deploy, and never restarts one itself (restartIfChanged
  # is off; the chain re-runs with the new definitions right after). Requires= orders the chain
  # and stops it at the first unit that fails. Each waits for the network, since most of them
  # clone recipes, pull images or call Drone.
  #   waits: the script exits 75 (EX_TEMPFAIL) while it waits for something outside the host
  #   (a human step); systemd then runs it again every minute, and cc-ci-status calls the unit
  #   waiting rather than failed.
  mkReconcileService =
    { description
    , script
    , requires ? [ ]
    , wants ? [ ]
    , environment ? { }
    , serviceConfig ? { }
    , timeout ? 600
    , waits ? false
    }: {
      inherit description requires;
      wantedBy = [ "cc-ci-reconcile.target" ];
      partOf = [ "cc-ci-reconcile.target" ];
      wants = wants ++ [ "network-online.target" ];
      after = requires ++ wants ++ [ "network-online.target" ];
      restartIfChanged = false;
      startLimitIntervalSec = lib.mkIf waits 0;
      environment = {
        UNIT_NAME = script.name;
        # The Docker CLI's own state (none is needed) stays in the unit's private /tmp.
        DOCKER_CONFIG = "/tmp/docker";
        HOME = "/tmp";
      } // environment;
      serviceConfig = reconcileHardening // {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = lib.getExe script;
        # The scripts bound their own waits; this only catches a hang outside them.
        TimeoutStartSec = timeout + 300;
      } // lib.optionalAttrs waits {
        RestartForceExitStatus = 75;
        RestartSec = "1min";
      } // serviceConfig;
    };

  # An abra .env: KEY='value' lines. Single quotes keep values literal for abra's .env parser
  # (no $-expansion); the modules assert that no value holds a quote or a newline.
  renderEnv = env: concatStringsSep "" (mapAttrsToList (k: v: "${k}='${toString v}'\n") env);

  envValueIsSafe = v: !(lib.hasInfix "'" (toString v) || lib.hasInfix "\n" (toString v));

  # A Co-op Cloud app deployed with abra from the infrastructure abra directory, as a reconcile
  # unit running nix/scripts/abra-app.sh.
  #   secrets:   docker secret name -> { version; file; }, inserted with `abra app secret insert`
  #              its version written to the .env as `versionKey` (default SECRET_<NAME>_VERSION,
  #              the recipe's compose file names the key);
  #   secretEnv: .env variable -> { file; template ? "@value@"; }: at run time its value is the
  #              template with @value@ replaced by the file's content.
  mkAbraApp =
    { description
    , abra
    , domain
    , recipe
    , version
    , env
    , secrets ? { }
    , secretEnv ? { }
    , requires ? [ ]
    , timeout ? 600
    }:
    let
      secretVersions = lib.mapAttrs' (name: s: lib.nameValuePair (s.versionKey or "SECRET_${lib.toUpper name}_VERSION") s.version) secrets;
      envFile = pkgs.writeText "${domain}.env" (renderEnv (env // secretVersions // {
        TYPE = if version == null then recipe else "${recipe}:${version}";
        DOMAIN = domain;
      }));
      envCredential = name: "env-${lib.toLower name}";
    in
    mkReconcileService {
      inherit description requires timeout;
      script = reconcileScript "abra-app" [ abra.package pkgs.docker pkgs.git pkgs.coreutils pkgs.diffutils pkgs.gnused ];
      environment = {
        UNIT_NAME = "cc-ci-app-${recipe}";
        APP_DOMAIN = domain;
        APP_RECIPE = recipe;
        APP_VERSION = if version == null then "" else version;
        APP_ENV_FILE = "${envFile}";
        APP_SECRETS = concatStringsSep " " (mapAttrsToList (name: s: "${name}:${s.version}:${name}") secrets);
        APP_SECRET_ENV = concatStringsSep " " (mapAttrsToList (name: _: "${name}=${envCredential name}") secretEnv);
      } // lib.mapAttrs' (name: s: lib.nameValuePair "APP_SECRET_TEMPLATE_${name}" (s.template or "@value@")) secretEnv // {
        ABRA_DIR = abra.directory;
        HOME = abra.directory;
        ABRA_FLAGS = concatStringsSep " " abra.flags;
        DEPLOY_FLAGS = concatStringsSep " " abra.deployFlags;
        NETWORK_NAME = abra.network;
        CONVERGE_TIMEOUT = toString timeout;
      };
      serviceConfig = {
        StateDirectory = baseNameOf abra.directory;
        StateDirectoryMode = "0700";
        LoadCredential =
          mapAttrsToList (name: s: "${name}:${s.file}") secrets
          ++ mapAttrsToList (name: s: "${envCredential name}:${s.file}") secretEnv;
      };
    };
}
