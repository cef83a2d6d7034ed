import importlib.util
import itertools

import pytest

from tui_chat_dev.serverproc import RunningServer, start_server

_names = itertools.count(1)


RUNTIMES = ("local", "lambda")
"""``lambda``: the AWS Lambda handlers behind the local API Gateway emulator, over moto's DynamoDB."""


@pytest.fixture(scope="module", params=list(RUNTIMES))
def server(request, tmp_path_factory) -> RunningServer:
    """One real ``tui-chat serve`` per test module and runtime (tests use distinct usernames)."""
    running = start_runtime(request.param, tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


def start_runtime(runtime: str, folder, extra_args: tuple[str, ...] = ()) -> RunningServer:
    """A ``tui-chat serve`` of ``runtime`` (one of ``RUNTIMES``); skips when its packages are missing."""
    if runtime == "lambda":
        missing = [m for m in ("boto3", "moto", "flask") if importlib.util.find_spec(m) is None]
        if missing:
            pytest.skip(f"the lambda runtime needs {', '.join(missing)} (the test extra installs them)")
    return start_server(folder, extra_args=extra_args, runtime=runtime)


@pytest.fixture
def fresh_server(tmp_path) -> RunningServer:
    """A server of the test's own, for tests that kill, restart or exhaust it."""
    running = start_server(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def names():
    """Unique usernames, so tests can share a server."""

    def make(prefix: str = "user") -> str:
        return f"{prefix}{next(_names)}"

    return make
