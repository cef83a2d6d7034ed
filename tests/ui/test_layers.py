"""DESIGN.md's layers: the UI imports no socket, server or SQL module; the client imports no Textual."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "tui_chat"


def imported_modules(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(PACKAGE))] = names
    return found


def test_the_ui_imports_no_socket_server_or_sql():
    forbidden = ("socket", "sqlite3", "tui_chat.server", "uvicorn", "websockets", "httpx")
    offenders = {
        path: sorted(name for name in names if name.split(".")[0] in forbidden or name.startswith(forbidden))
        for path, names in imported_modules(PACKAGE / "ui").items()
    }
    assert not {path: names for path, names in offenders.items() if names}


def test_the_client_and_the_server_import_no_textual():
    for layer in ("client", "server"):
        offenders = {path: names for path, names in imported_modules(PACKAGE / layer).items() if any(n.startswith("textual") for n in names)}
        assert not offenders, layer


def test_the_installed_package_imports_no_development_tool():
    """moto, the API Gateway emulator and test helpers live in ``tui_chat_dev``, outside the wheel."""
    offenders = {
        path: sorted(n for n in names if n.split(".")[0] in ("moto", "tui_chat_dev", "tests", "pytest"))
        for path, names in imported_modules(PACKAGE).items()
    }
    assert not {path: names for path, names in offenders.items() if names}


def test_server_frames_are_built_from_protocols_typed_events():
    """No chat frame is written by hand in the servers: ``protocol.event_to_wire`` is the one source."""
    hand_built = []
    for path in (PACKAGE / "server").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "encode":
                if node.args and isinstance(node.args[0], ast.Dict):
                    hand_built.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not hand_built
