"""custom-html suite helpers: put a file into the nginx content volume through `abra app run`."""

import secrets

import pytest

HTML_ROOT = "/usr/share/nginx/html"


@pytest.fixture
def put_file(app_run):
    """`put_file(name, text)`: writes `text` to HTML_ROOT/name inside the app service.

    The content travels as an argument, not stdin: `abra app run --no-tty` does not promise to
    forward stdin to the container."""

    def put(name: str, text: str) -> None:
        assert "/" not in name
        app_run("app", "sh", "-c", 'printf %s "$1" > "$2"', "sh", text, f"{HTML_ROOT}/{name}",
                check=True)

    return put


@pytest.fixture
def token():
    return secrets.token_hex(6)
