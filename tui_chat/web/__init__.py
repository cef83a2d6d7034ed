"""The app in a browser: ``tui-chat web`` and ``tui-chat serve --web``.

Each browser tab is one app process (``browser_app``), started by the web front (``front``)
through textual-serve's process bridge (``process``), in a folder and an environment of its own
(``isolation``) that go when the tab does. Nothing here is imported by the terminal client.
"""
