"""Open a saved file with the program the system chose for its kind (a person asked to)."""

from __future__ import annotations

import os
import shutil
import subprocess  # nosec B404 - a fixed program, the path as one argument, no shell
import sys
from pathlib import Path


def open_with_system(path: Path) -> str | None:
    """Start the system's opener on ``path``; why not, or None when it was started."""
    if sys.platform == "win32":
        os.startfile(path)  # nosec B606 - the file the person just saved and asked to open
        return None
    program = "open" if sys.platform == "darwin" else "xdg-open"
    found = shutil.which(program)
    if found is None:
        return f"no {program} on this system: the file is at {path}"
    subprocess.Popen(  # nosec B603 - a fixed program found on PATH, the path as one argument
        [found, str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    return None
