"""End to end: two real ``tui-chat`` clients in tmux against a real ``tui-chat serve``.

Alice types a message with ``send-keys``; it must appear on Bob's screen (``capture-pane``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_chat_dev.serverproc import signup, start_server

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")

SCREEN_TIMEOUT_S = 20.0


class Tmux:
    def __init__(self, socket: Path) -> None:
        self.socket = str(socket)

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], check=True, capture_output=True, text=True, timeout=10).stdout

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={v!s}" for k, v in env.items())
        shell = f"env {exports} {' '.join(command)}"
        self.run("new-session", "-d", "-s", name, "-x", "110", "-y", "32", shell)

    def keys(self, name: str, *keys: str) -> None:
        self.run("send-keys", "-t", name, *keys)

    def type(self, name: str, text: str) -> None:
        self.run("send-keys", "-t", name, "-l", text)

    def screen(self, name: str) -> str:
        return self.run("capture-pane", "-p", "-t", name)

    def title(self, name: str) -> str:
        return self.run("display-message", "-p", "-t", name, "#{pane_title}").strip()

    def wait_for(self, name: str, text: str, timeout: float = SCREEN_TIMEOUT_S) -> str:
        return self.wait_until(name, lambda screen: text in screen, timeout, text)

    def wait_until(self, name: str, condition, timeout: float = SCREEN_TIMEOUT_S, what: str = "condition") -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen(name)
            if condition(screen):
                return screen
            time.sleep(0.05)  # polling a terminal: there is no event to await across processes
        raise AssertionError(f"{what!r} never held on {name}'s screen:\n{screen}")

    def wait_gone(self, name: str, timeout: float = SCREEN_TIMEOUT_S) -> None:
        """Until the program in ``name`` has exited (its session ends with it)."""
        deadline = time.monotonic() + timeout
        while subprocess.run(["tmux", "-S", self.socket, "has-session", "-t", name], capture_output=True, timeout=10).returncode == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} is still running:\n{self.screen(name)}")
            time.sleep(0.05)

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def tmux(tmp_path):
    mux = Tmux(tmp_path / "tmux.sock")
    yield mux
    mux.kill()


async def test_a_message_typed_in_one_terminal_appears_in_another(tmp_path, tmux):
    server = start_server(tmp_path)
    try:
        await signup(server.http_url, "alice")
        await signup(server.http_url, "bob")
        command = [sys.executable, "-m", "tui_chat", "--server", server.http_url]
        for name in ("alice", "bob"):
            home = tmp_path / name
            env = {
                "TUI_CHAT_DATA_DIR": home / "data", "TUI_CHAT_CONFIG_DIR": home / "config",
                "TUI_CHAT_CACHE_DIR": home / "cache", "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
                "PYTHONPATH": Path(__file__).resolve().parents[2], "TERM": "xterm-256color", "HOME": home,
            }  # fmt: skip
            tmux.start(name, [*command, "--user", name], env)
        # Each step waits for the screen to show the previous one: keys typed into a
        # terminal before the app has moved focus would land in the wrong field.
        for name in ("alice", "bob"):
            tmux.wait_for(name, "Password")
            # The terminal asked about images before the app started; tmux took that query as
            # the pane's title, which the app then sets to its own.
            assert tmux.title(name) == "tui-chat"
            tmux.type(name, "correct horse battery")
            tmux.wait_for(name, "•" * len("correct horse battery"))
            tmux.keys(name, "Enter")
            tmux.wait_for(name, "● connected")
        for name, other in (("bob", "alice"), ("alice", "bob")):
            tmux.keys(name, "C-o")  # focus moves with the key: no need to wait before typing
            tmux.type(name, other)
            tmux.wait_until(name, lambda screen: "filter people…" not in screen)
            tmux.keys(name, "Enter")
            tmux.wait_until(name, lambda screen: "No conversation open" not in screen)
        tmux.wait_for("alice", "No messages yet")
        tmux.type("alice", "hello from [b]tmux[/b]")
        tmux.wait_for("alice", "hello from [b]tmux[/b]")  # in the composer
        tmux.keys("alice", "Enter")
        screen = tmux.wait_for("bob", "hello from [b]tmux[/b]")
        assert "alice" in screen
        tmux.wait_for("alice", "✓")  # the server stored it
    finally:
        server.stop()


async def test_started_with_the_server_down_it_shows_history_queues_and_delivers_once(tmp_path, tmux):
    """No keyring here: the session is kept in a 0600 file because config.toml asks for it."""
    from tui_chat_dev.wsclient import WsClient, login

    server = start_server(tmp_path / "srv")
    try:
        await signup(server.http_url, "alice")
        await signup(server.http_url, "bob")
        home = tmp_path / "alice"
        (home / "config").mkdir(parents=True)
        (home / "config" / "config.toml").write_text(
            f'server = "{server.http_url}"\nusername = "alice"\nstore_tokens_in_file = true\nnotifications = false\n'
        )
        env = {
            "TUI_CHAT_DATA_DIR": home / "data", "TUI_CHAT_CONFIG_DIR": home / "config",
            "TUI_CHAT_CACHE_DIR": home / "cache", "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "PYTHONPATH": Path(__file__).resolve().parents[2], "TERM": "xterm-256color", "HOME": home,
        }  # fmt: skip
        command = [sys.executable, "-m", "tui_chat"]
        tmux.start("first", command, env)
        tmux.wait_for("first", "Password")
        tmux.type("first", "correct horse battery")
        tmux.wait_for("first", "•" * len("correct horse battery"))
        tmux.keys("first", "Enter")
        tmux.wait_for("first", "● connected")
        tmux.keys("first", "C-o")
        tmux.type("first", "bob")
        tmux.keys("first", "Enter")
        tmux.wait_for("first", "No messages yet")
        tmux.type("first", "said before the outage")
        tmux.keys("first", "Enter")
        tmux.wait_for("first", "✓")
        tmux.keys("first", "C-q")
        tmux.wait_gone("first")

        server.stop()
        tmux.start("offline", command, env)
        tmux.wait_until("offline", lambda screen: "Password" not in screen and "bob" in screen, what="the chat screen, not sign-in")
        tmux.keys("offline", "C-o")
        tmux.type("offline", "bob")
        tmux.keys("offline", "Enter")
        tmux.wait_for("offline", "said before the outage")  # history from the cache
        tmux.type("offline", "typed while the server was down")
        tmux.keys("offline", "Enter")
        tmux.wait_for("offline", "1 queued")
        assert "◷" in tmux.screen("offline")

        server.start()
        tmux.wait_until("offline", lambda screen: "queued" not in screen and "◷" not in screen and "● connected" in screen,
                        timeout=60, what="delivered after the server came back")  # fmt: skip
        bob = await WsClient.open(server.ws_url, await login(server.http_url, "bob"), "bob")
        page = await bob.request({"action": "getMessages", "with": "alice"})
        assert [m["body"] for m in page["items"]] == ["said before the outage", "typed while the server was down"]
        await bob.close()
    finally:
        server.stop()



async def test_name_tab_password_enter_typed_in_one_burst_signs_in(tmp_path, tmux):
    """A password manager's auto-type (or a paste) sends ``name<Tab>password<Enter>`` in one write:
    the terminal delivers it in one read, and the Tab must still move to the password field."""
    server = start_server(tmp_path / "srv")
    try:
        await signup(server.http_url, "carol")
        home = tmp_path / "carol"
        env = {
            "TUI_CHAT_DATA_DIR": home / "data", "TUI_CHAT_CONFIG_DIR": home / "config",
            "TUI_CHAT_CACHE_DIR": home / "cache", "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "PYTHONPATH": Path(__file__).resolve().parents[2], "TERM": "xterm-256color", "HOME": home,
        }  # fmt: skip
        tmux.start("carol", [sys.executable, "-m", "tui_chat", "--server", server.http_url], env)
        tmux.wait_for("carol", "Password")
        tmux.type("carol", "carol\tcorrect horse battery\r")  # one send-keys: one write to the terminal
        tmux.wait_for("carol", "carol (you)")  # signed in as carol: the name did not swallow the rest
    finally:
        server.stop()
