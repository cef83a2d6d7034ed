"""Random HTTP requests against a live server: every answer is a success the request earned or a
4xx with a JSON error, never a 5xx or a hang, and the server keeps serving with a clean log.
Long form: ``TUI_CHAT_FUZZ_REQUESTS=5000 pytest tests/server/test_http_fuzz.py --timeout 0`` (requests per
runtime: 10,000 in all, about 90 s on 2 cores)."""

from __future__ import annotations

import json
import os

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui_chat import protocol as p

REQUESTS = int(os.environ.get("TUI_CHAT_FUZZ_REQUESTS", "300"))
ROUTES = ["/auth/signup", "/auth/login", "/auth/refresh", "/info", "/healthz"]

# -- bodies ---------------------------------------------------------------------------------------

lone_surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(exclude_categories=[]), max_size=80),  # lone surrogates included
    st.from_regex(r"[a-zA-Z0-9_.-]{1,34}", fullmatch=True),  # near-usernames
    st.text(min_size=8, max_size=20),  # password-sized
    st.tuples(st.text(max_size=40), lone_surrogates, st.text(min_size=16, max_size=40)).map("".join),
    st.sampled_from(["\x00", "\u202e", "\x1b[31m", "\ufeff", "' OR '1'='1", "alice\n", "ＡＬＩＣＥ"]),
    st.integers(0, 2000).map(lambda n: "x" * n),
)
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**200),
    st.floats(allow_nan=False, allow_infinity=False), texts,
)  # fmt: skip
values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
field_values = st.one_of(texts, texts, texts, values)  # mostly strings, sometimes any JSON
extras = st.dictionaries(st.text(max_size=12), values, max_size=2)


def shaped(*fields: str):
    """A JSON object with the route's fields (each maybe missing) and stray extras."""
    required = st.fixed_dictionaries({f: field_values for f in fields})
    return st.builds(lambda obj, extra, drop: {k: v for k, v in {**extra, **obj}.items() if k != drop}, required, extras,
                     st.sampled_from([None, None, None, *fields]))  # fmt: skip


def encode(value, mode: int) -> bytes:
    if mode == 0:  # lone surrogates travel as \ud800 escapes
        return json.dumps(value).encode()
    # raw UTF-8; a lone surrogate becomes bytes that are not UTF-8 at all
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def encoded(objects) -> st.SearchStrategy[bytes]:
    return st.builds(encode, objects, st.integers(0, 1))


deep = st.builds(lambda n, kind: (b"[" * n if kind else b'{"a":' * n) + b"1", st.integers(1, 30_000), st.booleans())
odd = st.sampled_from([
    b"", b"null", b"{}", b"{", b'{"username": NaN}', b'{"password": Infinity}', b"\xef\xbb\xbf{}", b"{} {}",
    b'{"username": 1' + b"0" * 5000 + b"}", b'{"username": 1e999}', b'{"username":"a","username":"b"}',
    b"username=alice&password=correct+horse", b"\xff\xfe{\x00}\x00", b"\xc0\x80", b"\xed\xa0\x80",
    b'{"refreshToken": "\\ud800' + b"a" * 20 + b'"}',
])  # fmt: skip
oversize = st.sampled_from([64 * 1024 + 1, 70_000, 200_000]).map(lambda n: b'{"username":"' + b"x" * n + b'"}')
any_body = st.one_of(encoded(values), st.binary(max_size=300), deep, odd, oversize)

paths = st.one_of(
    st.sampled_from(ROUTES),
    st.sampled_from(ROUTES).map(lambda r: r + "/") | st.sampled_from(ROUTES).map(str.upper),
    st.from_regex(r"/[A-Za-z0-9._~%/-]{0,40}", fullmatch=True),  # no '@': the emulator's @connections API is not ours
    st.sampled_from(["/", "//auth/login", "/auth", "/auth/../info", "/ws", "/auth/login%00", "/%ff", "/auth/%6cogin"]),
)
methods = st.sampled_from(["POST", "POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])
content_types = st.sampled_from([
    None, b"application/json", b"application/json; charset=utf-16", b"text/plain", b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=xyz", b"application/octet-stream", b"*/*", b"", "application/json; charset=\u00e9".encode(),
])  # fmt: skip
credentials = encoded(shaped("username", "password"))
requests = st.one_of(
    # well-aimed: the endpoints' own field names with odd values (most of the run)
    st.tuples(st.just("POST"), st.sampled_from(["/auth/signup", "/auth/login"]), credentials, content_types),
    st.tuples(st.just("POST"), st.sampled_from(["/auth/signup", "/auth/login"]), credentials, content_types),
    st.tuples(st.just("POST"), st.just("/auth/refresh"), encoded(shaped("refreshToken")), content_types),
    st.tuples(st.just("POST"), st.sampled_from(ROUTES[:3]), any_body, content_types),  # bodies of every shape
    st.tuples(methods, paths, any_body, content_types),  # anything anywhere
)

# -- what a correct server may answer -------------------------------------------------------------


def valid_credentials(body: bytes) -> tuple[str, str] | None:
    """(username, password) when ``body`` is a well-formed sign-up/sign-in, else None."""
    try:
        obj = p.decode_object(body)
    except p.ProtocolError:
        return None
    name, password = obj.get("username"), obj.get("password")
    if not p.is_valid_username(name) or not isinstance(password, str) or not 8 <= len(password) <= 1024 or "\x00" in password:
        return None
    try:
        password.encode()
    except UnicodeEncodeError:
        return None
    return p.normalize_username(name), password


class Oracle:
    def __init__(self) -> None:
        self.accounts: dict[str, str] = {}  # created during the run: name -> password

    def check(self, method: str, path: str, body: bytes, response: httpx.Response) -> None:
        status, route = response.status_code, (method, path)
        where = f"{method} {path} {body[:120]!r} -> {status} {response.content[:200]!r}"
        if method == "HEAD" and 200 <= status < 500:
            return  # no body to read
        payload = response.json()  # always JSON
        assert isinstance(payload, dict), where
        if route in (("GET", "/healthz"), ("GET", "/info")):
            assert status == 200, where
            return
        creds = valid_credentials(body)
        if status == 201:
            assert route == ("POST", "/auth/signup") and creds and creds[0] not in self.accounts, where
            self.accounts[creds[0]] = creds[1]
        elif status == 200:
            assert route == ("POST", "/auth/login") and creds and self.accounts.get(creds[0]) == creds[1], where
        else:
            assert 400 <= status < 500 and isinstance(payload.get("error"), str), where
        if 200 <= status < 300:
            assert payload["token"] and payload["refreshToken"] and payload["user"] == creds[0], where


def test_random_http_requests_get_json_4xx_and_the_server_keeps_serving(server):
    oracle = Oracle()
    with httpx.Client(base_url=server.http_url, timeout=15) as http:

        @settings(max_examples=REQUESTS, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck), print_blob=True)  # fmt: skip
        @given(requests)
        def one(request):
            method, path, body, content_type = request
            headers = {"content-type": content_type} if content_type is not None else {}
            response = http.request(method, path, content=body, headers=headers)
            oracle.check(method, response.request.url.path, body, response)

        one()

        assert server.proc.poll() is None
        assert http.get("/healthz").json() == {"status": "ok"}
        name = f"after-fuzz-{len(oracle.accounts)}"  # a real sign-up, sign-in and refresh still work
        assert http.post("/auth/signup", json={"username": name, "password": "long enough"}).status_code == 201
        login = http.post("/auth/login", json={"username": name, "password": "long enough"})
        assert login.status_code == 200
        assert http.post("/auth/refresh", json={"refreshToken": login.json()["refreshToken"]}).status_code == 200
    errors = [line for line in server.log_lines if line.get("level") in ("error", "critical") or "exc" in line]
    assert not errors, f"the server logged errors: {errors[:3]}"
    print(f"{REQUESTS} requests, {len(oracle.accounts)} accounts made by chance")
