"""The HTML the web front serves: the terminal page, and the page said when every session is taken.

textual-serve's own page is not used: it loads a font from a third party (each visit would tell
it who came) and builds the WebSocket address from a configured public URL. This one loads
nothing but its own files, and its WebSocket goes to the page's own origin, whatever name or
proxy it was reached through.
"""

from __future__ import annotations

from html import escape

TERMINAL_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/static/css/xterm.css">
<link rel="preload" href="/static/fonts/RobotoMono-VariableFont_wght.ttf" as="font" type="font/ttf" crossorigin>
<script src="/static/js/textual.js"></script>
<style>
  @font-face {{ font-family: "Roboto Mono"; src: url("/static/fonts/RobotoMono-VariableFont_wght.ttf") format("truetype"); }}
  html, body {{ margin: 0; height: 100%; background: #0c181f; }}
  #terminal {{ position: absolute; inset: 0; opacity: 0; transition: opacity 0.2s ease-out; }}
  body.-first-byte #terminal {{ opacity: 1; }}
  .font-probe {{ font-family: "Roboto Mono"; position: absolute; visibility: hidden; }}
  .note {{ position: absolute; left: 0; right: 0; font: 15px "Roboto Mono", monospace; color: #e8eef2;
           background: #12232d; padding: 10px 16px; display: flex; gap: 16px; align-items: center; z-index: 10; }}
  #starting {{ top: 0; }}
  body.-first-byte #starting {{ display: none; }}
  #ended {{ bottom: 0; display: none; }}
  body.-closed #ended {{ display: flex; }}
  #ended button {{ font: inherit; background: #5e0ba7; color: #fff; border: 0; padding: 6px 14px; cursor: pointer; }}
</style>
</head>
<body>
<span class="font-probe">tui-chat</span>
<div id="starting" class="note">{title}: starting…</div>
<div id="ended" class="note"><span>Session ended.</span><button type="button" onclick="location.reload()">Start again</button></div>
<div id="terminal" class="textual-terminal" data-session-websocket-url="" data-font-size="{font_size}"></div>
<script>
  (function () {{
    var url = new URL("/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    document.getElementById("terminal").dataset.sessionWebsocketUrl = url.href;
  }})();
</script>
</body>
</html>
"""

BUSY_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}: busy</title>
<style>body {{ background: #0c181f; color: #e8eef2; font: 16px monospace; margin: 15vh auto; max-width: 40em; padding: 0 1em; }}</style>
</head>
<body>
<h1>{title} is busy</h1>
<p>{message}</p>
<p><a href="/" style="color:#ac5af4">Try again</a></p>
</body>
</html>
"""


def busy_message(max_sessions: int) -> str:
    taken = "The one session this server allows is" if max_sessions == 1 else f"All {max_sessions} sessions this server allows are"
    return f"{taken} in use. Try again in a few minutes, when someone has closed their tab."


def terminal_page(title: str, font_size: int) -> str:
    return TERMINAL_PAGE.format(title=escape(title), font_size=int(font_size))


def busy_page(title: str, max_sessions: int) -> str:
    return BUSY_PAGE.format(title=escape(title), message=escape(busy_message(max_sessions)))


def busy_terminal_text(max_sessions: int) -> bytes:
    """What the terminal shows when every session was taken between the page and its WebSocket."""
    return ("\x1b[2J\x1b[H\r\n  tui-chat is busy.\r\n\r\n  " + busy_message(max_sessions) + "\r\n").encode()
