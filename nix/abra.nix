# abra, the Co-op Cloud CLI, as its published release binary (a static Go build). The version
# and its hash are instance settings (services.cc-ci.abra.version and .hash): the hash is
# computed on the host at install (docs/install.md), and nothing unverified is ever installed.
{ lib
, stdenvNoCC
, fetchurl
, version
, hash
, url
}:

stdenvNoCC.mkDerivation {
  pname = "abra";
  inherit version;

  src =
    if hash == null then throw "abra ${version}: no hash is pinned (services.cc-ci.abra.hash; docs/install.md, \"Pin abra\")"
    else fetchurl { inherit url hash; };

  dontUnpack = true;
  dontConfigure = true;
  dontBuild = true;

  installPhase = ''
    runHook preInstall
    install -Dm755 "$src" "$out/bin/abra"
    runHook postInstall
  '';

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    # abra creates its state directory on start; keep it out of the (read-only) home.
    HOME="$TMPDIR" ABRA_DIR="$TMPDIR/abra" "$out/bin/abra" --version | grep -F -- "${version}"
    runHook postInstallCheck
  '';

  meta = {
    description = "Co-op Cloud command-line utility for deploying recipes to Docker Swarm";
    homepage = "https://git.coopcloud.tech/toolshed/abra";
    license = lib.licenses.gpl3Only;
    sourceProvenance = [ lib.sourceTypes.binaryNativeCode ];
    mainProgram = "abra";
    platforms = [ "x86_64-linux" ];
  };
}
