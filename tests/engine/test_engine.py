"""The ground the stages will deploy on: the project's engine (dev/engine) in swarm mode with
the `proxy` network and the egress guard, the images dev/images builds, the real Traefik
(dev/proxy), and a stack shaped like custom-html's that converges, is routed by its own Traefik
labels over HTTPS on 127.0.0.1, serves what is written into its volume, and leaves nothing
behind once removed; and the postgres image keeping the upstream image's contract. Docker itself is the witness throughout. Apps are reached only through
Traefik on 127.0.0.1, with `docker exec` or from a container on `proxy`, never from the host to
a container address (facts: ../shared/facts/docker.md)."""

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def engine_env() -> dict:
    out = subprocess.run([str(REPO / "dev/engine"), "env"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    host = out.strip().split("=", 1)[1]
    return {**os.environ, "DOCKER_HOST": host}


ENV = engine_env()


def docker(*args, check=True, timeout=120, input=None) -> subprocess.CompletedProcess:
    p = subprocess.run(["docker", *args], env=ENV, capture_output=True, text=True,
                       timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {p.returncode}\n{p.stdout}{p.stderr}")
    return p


pytestmark = pytest.mark.skipif(
    subprocess.run([str(REPO / "dev/engine"), "status"], env=ENV, timeout=30).returncode != 0,
    reason="the engine is not running: dev/engine start (dev/test does)")


def test_swarm_and_proxy_network():
    info = json.loads(docker("info", "--format", "{{json .Swarm}}").stdout)
    assert info["LocalNodeState"] == "active" and info["ControlAvailable"], info
    net = json.loads(docker("network", "inspect", "proxy").stdout)[0]
    assert net["Driver"] == "overlay" and net["Attachable"] and net["Scope"] == "swarm", net


def test_guard_rejects_private_ranges_on_the_default_route():
    route = subprocess.run(["ip", "route", "show", "default"], capture_output=True,
                           text=True, check=True).stdout.split()
    if "dev" not in route:
        pytest.skip("no default route: nothing can leave this machine")
    ifc = route[route.index("dev") + 1]
    rules = subprocess.run(["iptables", "-S", "CCCI-GUARD"], capture_output=True, text=True,
                           check=True).stdout
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
        assert f"-A CCCI-GUARD -d {net} -o {ifc} -j REJECT" in rules, rules
    for chain in ("OUTPUT", "DOCKER-USER"):
        jumps = subprocess.run(["iptables", "-S", chain], capture_output=True, text=True,
                               check=True).stdout
        assert f"-A {chain} -j CCCI-GUARD" in jumps, jumps


def test_images_are_built_and_labelled_with_their_inputs():
    for ref in ("nginx:1.25.0", "nginx:1.27.2", "postgres:15", "traefik:3.7.15",
                "matrixdotorg/synapse:v1.160.0", "matrixdotorg/synapse:v1.163.2"):
        label = docker("image", "inspect", "-f", '{{index .Config.Labels "ccci.inputs"}}',
                       ref).stdout.strip()
        assert len(label) == 16, (ref, label)
    version = docker("run", "--rm", "traefik:3.7.15", "version").stdout
    assert "3.7.15" in version, version
    for v in ("1.160.0", "1.163.2"):
        # The tag is the program's version, with Debian's psycopg2 for PostgreSQL.
        out = docker("run", "--rm", "--network", "none", f"matrixdotorg/synapse:v{v}", "python3",
                     "-c", "import synapse, psycopg2; print(synapse.__version__)").stdout
        assert out.strip() == v, out


COMPOSE = """
version: "3.8"
services:
  app:
    image: nginx:1.27.2
    networks: [proxy]
    volumes: [content:/usr/share/nginx/html]
    secrets: [admin_password]
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost"]
      interval: 1s
      timeout: 5s
      retries: 30
    deploy:
      labels:
        - "traefik.enable=true"
        - "traefik.http.services.${STACK_NAME}.loadbalancer.server.port=80"
        - "traefik.http.routers.${STACK_NAME}.rule=Host(`${DOMAIN}`)"
        - "traefik.http.routers.${STACK_NAME}.entrypoints=web-secure"
        - "traefik.http.routers.${STACK_NAME}.tls.certresolver=${LETS_ENCRYPT_ENV}"
        - "coop-cloud.${STACK_NAME}.version=1.1.0+1.27.2"
networks:
  proxy:
    external: true
volumes:
  content:
secrets:
  admin_password:
    external: true
    name: ${STACK_NAME}_admin_password_v1
"""


@pytest.fixture(scope="module")
def proxy() -> dict:
    out = subprocess.run([str(REPO / "dev/proxy"), "up"], env=ENV, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    pairs = out.stdout.strip().removeprefix("export ").split()
    return dict(p.split("=", 1) for p in pairs)


def via_traefik(proxy: dict, host: str, path: str, scheme: str = "https") -> tuple[int, str, str]:
    """GET through the real Traefik on 127.0.0.1, by name (SNI and Host), the CA verified."""
    port = proxy["CCCI_PROXY_HTTPS_PORT" if scheme == "https" else "CCCI_PROXY_HTTP_PORT"]
    p = subprocess.run(
        ["curl", "-s", "--max-time", "5", "--cacert", proxy["CCCI_PROXY_CA"],
         "--resolve", f"{host}:{port}:127.0.0.1", "-o", "-", "-w", "\n%{http_code} %{redirect_url}",
         f"{scheme}://{host}:{port}{path}"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"curl {host}{path}: {p.returncode} {p.stderr}"
    body, _, tail = p.stdout.rpartition("\n")
    code, _, location = tail.partition(" ")
    return int(code), body, location


def wait(what, limit, f):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        v = f()
        if v:
            return v
        time.sleep(0.5)
    raise AssertionError(f"timed out after {limit}s waiting for {what}")


def leftovers(stack: str) -> dict:
    label = f"label=com.docker.stack.namespace={stack}"
    return {
        "services": docker("service", "ls", "-q", "--filter", label).stdout.split(),
        "containers": docker("ps", "-aq", "--filter", label).stdout.split(),
        "volumes": docker("volume", "ls", "-q", "--filter", label).stdout.split(),
        "secrets": [s for s in docker("secret", "ls", "--format", "{{.Name}}").stdout.split()
                    if s.startswith(f"{stack}_")],
        "networks": docker("network", "ls", "-q", "--filter", label).stdout.split(),
    }


def healthy_task(svc: str, not_in: tuple = (), limit: float = 90) -> str:
    def find():
        out = docker("ps", "--filter", f"label=com.docker.swarm.service.name={svc}",
                     "--format", "{{.ID}} {{.Status}}").stdout.splitlines()
        ids = [line.split()[0] for line in out if "(healthy)" in line]
        ids = [i for i in ids if i not in not_in]
        return ids[0] if ids else None
    return wait(f"a healthy task of {svc}", limit, find)


def remove_stack(stack: str, secret: str):
    """Removes a test stack as abra's undeploy + volume/secret removal would: the stack, then
    (once its containers are gone) its volumes and its secret."""
    docker("stack", "rm", stack, check=False)
    wait("the stack's containers gone", 60,
         lambda: not docker("ps", "-aq", "--filter",
                            f"label=com.docker.stack.namespace={stack}").stdout.strip())
    for v in leftovers(stack)["volumes"]:
        docker("volume", "rm", v, check=False)
    docker("secret", "rm", secret, check=False)


@pytest.fixture(scope="module")
def ground(proxy, tmp_path_factory):
    """A custom-html-shaped stack deployed and healthy, with a marker file in its volume; torn
    down afterwards, and then nothing of it may be left and the proxy must be untouched."""
    name = f"ground-{secrets.token_hex(3)}"
    domain = f"{name}.{proxy['CCCI_BASE_DOMAIN']}"
    stack = name.replace("-", "_")
    svc = f"{stack}_app"
    compose = tmp_path_factory.mktemp("ground") / "compose.yml"
    compose.write_text(COMPOSE)
    docker("secret", "create", f"{stack}_admin_password_v1", "-", input=secrets.token_hex(16))
    try:
        env_stack = {**ENV, "STACK_NAME": stack, "DOMAIN": domain, "LETS_ENCRYPT_ENV": ""}
        p = subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never", "-c",
                            str(compose), stack], env=env_stack,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        task = healthy_task(svc, limit=60)
        marker = secrets.token_hex(8)
        docker("exec", task, "sh", "-c", f"echo {marker} > /usr/share/nginx/html/m.txt")
        yield {"domain": domain, "stack": stack, "svc": svc, "task": task, "marker": marker}
    finally:
        remove_stack(stack, f"{stack}_admin_password_v1")
    end = time.monotonic() + 30
    while any(leftovers(stack).values()) and time.monotonic() < end:
        time.sleep(0.5)
    assert not any(leftovers(stack).values()), leftovers(stack)
    assert docker("network", "inspect", "proxy", check=False).returncode == 0, "proxy removed"
    wait("the route to go with the app", 15,
         lambda: via_traefik(proxy, domain, "/m.txt")[0] == 404)
    assert docker("service", "ls", "-q", "--filter", "name=ccci_proxy_app").stdout.strip(), \
        "the proxy was touched"


def test_a_stack_converges_and_serves_its_volume(ground):
    svc = ground["svc"]
    label = docker("service", "inspect", "-f",
                   f'{{{{index .Spec.Labels "coop-cloud.{ground["stack"]}.version"}}}}', svc).stdout
    assert label.strip() == "1.1.0+1.27.2"
    # A fresh volume is filled from the image, as upstream nginx's is.
    assert "Welcome to nginx!" in docker("exec", ground["task"], "curl", "-s",
                                         "http://localhost/").stdout
    # From a helper on `proxy`, by the task's DNS name (service VIPs need IPVS, absent here).
    got = docker("run", "--rm", "--network", "proxy", "nginx:1.27.2", "curl", "-s",
                 "--max-time", "5", f"http://tasks.{svc}/m.txt").stdout
    assert got.strip() == ground["marker"]


def test_traefik_routes_it_by_its_own_labels(ground, proxy):
    domain = ground["domain"]
    # The swarm provider refreshes every 2 s: the route appears shortly after convergence.
    body = wait("Traefik to route the app", 30,
                lambda: (r := via_traefik(proxy, domain, "/m.txt"))[0] == 200 and r[1])
    assert body.strip() == ground["marker"]
    code, _, location = via_traefik(proxy, domain, "/m.txt", scheme="http")
    assert code in (301, 302, 307, 308) and location.startswith(f"https://{domain}"), (
        code, location)
    assert via_traefik(proxy, f"nobody.{proxy['CCCI_BASE_DOMAIN']}", "/")[0] == 404


def test_the_harness_reaches_it_by_name_through_traefik(ground, proxy):
    """What a recipe suite does on this ground: the `http` session and Chromium, told by
    CCCI_RESOLVE where the app's names are, reach https://<domain>/ through the real Traefik
    with the name intact (the wildcard certificate is checked against it)."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from ccci_harness.browser import launch
    from ccci_harness.context import Resolve
    from ccci_harness.http import AppSession

    assert proxy["CCCI_PROXY_HTTPS_PORT"] == "443", "the names are reached on the default port"
    domain = ground["domain"]
    rule = Resolve.parse(f"*.{proxy['CCCI_BASE_DOMAIN']}=127.0.0.1")
    s = AppSession(f"https://{domain}", proxy["CCCI_PROXY_CA"], resolve=rule)
    r = wait("the route", 30, lambda: (r := s.get("/m.txt")).status_code == 200 and r)
    assert r.text.strip() == ground["marker"]
    assert s.get("/").headers["Content-Type"].startswith("text/html")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, "/usr/bin/chromium", rule)
        try:
            page = browser.new_context(ignore_https_errors=True).new_page()
            resp = page.goto(f"https://{domain}/")
            assert resp is not None and resp.status == 200
            assert page.title() == "Welcome to nginx!"
        finally:
            browser.close()


PG_COMPOSE = """
version: "3.8"
services:
  db:
    image: postgres:15
    networks: [proxy]
    environment:
      POSTGRES_USER: synapse
      POSTGRES_DB: synapse
      POSTGRES_PASSWORD_FILE: /run/secrets/db_password
    secrets: [db_password]
    volumes: [postgres:/var/lib/postgresql/data]
    healthcheck:
      test: ["CMD", "pg_isready", "-U", "synapse"]
      interval: 1s
      timeout: 5s
      retries: 60
networks:
  proxy:
    external: true
volumes:
  postgres:
secrets:
  db_password:
    external: true
    name: ${STACK_NAME}_db_password_v1
"""


def test_postgres_image_keeps_upstreams_contract(tmp_path):
    """postgres:15 from dev/images: initialised from POSTGRES_* with the password from a docker
    secret, password auth from another container, pg_dump, and data kept across a restart."""
    stack = f"ccci_pg_{secrets.token_hex(3)}"
    svc = f"{stack}_db"
    password = secrets.token_hex(16)
    (tmp_path / "compose.yml").write_text(PG_COMPOSE)
    docker("secret", "create", f"{stack}_db_password_v1", "-", input=password)
    try:
        p = subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never", "-c",
                            str(tmp_path / "compose.yml"), stack],
                           env={**ENV, "STACK_NAME": stack}, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        task = healthy_task(svc)
        sql = "CREATE TABLE seed (v text); INSERT INTO seed VALUES ('kept');"
        docker("exec", task, "psql", "-v", "ON_ERROR_STOP=1", "-U", "synapse", "-d", "synapse",
               "-c", sql)

        def remote(pw: str) -> subprocess.CompletedProcess:
            return docker("run", "--rm", "--network", "proxy", "-e", f"PGPASSWORD={pw}",
                          "postgres:15", "psql", "-h", f"tasks.{svc}", "-U", "synapse", "-d",
                          "synapse", "-tAc", "SELECT v FROM seed", check=False)

        ok = remote(password)
        assert ok.returncode == 0 and ok.stdout.strip() == "kept", ok.stderr
        bad = remote("not-the-password")
        assert bad.returncode != 0 and "password authentication failed" in bad.stderr, bad
        dump = docker("exec", task, "pg_dump", "-U", "synapse", "synapse").stdout
        assert "CREATE TABLE public.seed" in dump and "kept" in dump
        docker("service", "update", "--force", "--detach", svc, timeout=180)
        task2 = healthy_task(svc, not_in=(task,))
        got = docker("exec", task2, "psql", "-U", "synapse", "-d", "synapse", "-tAc",
                     "SELECT v FROM seed").stdout
        assert got.strip() == "kept", "the data did not survive a restart"
    finally:
        remove_stack(stack, f"{stack}_db_password_v1")
    assert not any(leftovers(stack).values()), leftovers(stack)
