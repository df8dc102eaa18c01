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

  # The sandbox of a long-running cc-ci service that needs nothing but the network and its own
  # state (the bridge, dashboard-gen). Units extend it with their state directories.
  serviceHardening = {
    UMask = "0077";
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateUsers = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RemoveIPC = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    DevicePolicy = "closed";
    SystemCallArchitectures = "native";
    SystemCallFilter = [ "@system-service" "~@privileged" "~@resources" ];
    SystemCallErrorNumber = "EPERM";
  };

  # The sandbox of the reconcile oneshots. They run as root because they drive the Docker
  # socket and abra's state; they get no capabilities, a read-only system, and only the
  # syscalls of an ordinary service.
  reconcileHardening = {
    UMask = "0077";
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
    RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    CapabilityBoundingSet = "";
    SystemCallArchitectures = "native";
    SystemCallFilter = [ "@system-service" ];
  };

  # One reconcile script: nix/scripts/common.sh followed by nix/scripts/<name>.sh, shellchecked
  # when built.
  reconcileScript = name: runtimeInputs: pkgs.writeShellApplication {
    name = "cc-ci-${name}";
    inherit runtimeInputs;
    text = builtins.readFile ../scripts/common.sh + builtins.readFile (../scripts + "/${name}.sh");
  };

  # A reconcile unit: a oneshot that stays active once the host matches its declaration, so that
  # dependents are ordered after it. It runs at boot, again whenever its definition changes
  # (nixos-rebuild switch), and with the whole chain whenever cc-ci-reconcile restarts
  # cc-ci-swarm.service (Requires= propagates restarts to the units that require it): after
  # every activation and boot, and on its timer. It orders itself before cc-ci-reconcile, so
  # that at boot the second pass starts once the first is done.
  mkReconcileService =
    { description
    , script
    , requires ? [ ]
    , wants ? [ ]
    , environment ? { }
    , serviceConfig ? { }
    , timeout ? 600
    }: {
      inherit description;
      wantedBy = [ "multi-user.target" ];
      inherit requires wants;
      after = requires ++ wants;
      before = [ "cc-ci-reconcile.service" ];
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
      } // serviceConfig;
    };

  # An abra .env: KEY='value' lines. Single quotes keep values literal for abra's .env parser
  # (no $-expansion); the modules assert that no value holds a quote or a newline.
  renderEnv = env: concatStringsSep "" (mapAttrsToList (k: v: "${k}='${toString v}'\n") env);

  envValueIsSafe = v: !(lib.hasInfix "'" (toString v) || lib.hasInfix "\n" (toString v));

  # A Co-op Cloud app deployed with abra from the infrastructure abra directory, as a reconcile
  # unit running nix/scripts/abra-app.sh.
  #   secrets:   docker secret name -> { version; file; }, inserted with `abra app secret insert`
  #              (their SECRET_<NAME>_VERSION entries are added to the .env);
  #   secretEnv: .env variable -> file whose content becomes its value at run time.
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
      secretVersions = lib.mapAttrs' (name: s: lib.nameValuePair "SECRET_${lib.toUpper name}_VERSION" s.version) secrets;
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
          ++ mapAttrsToList (name: file: "${envCredential name}:${file}") secretEnv;
      };
    };
}
