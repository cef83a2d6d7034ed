"""Look-alike and control characters in usernames, and SQL (and DynamoDB expression) metacharacters
in every field: refused clearly or stored literally, and nothing else changes."""

from __future__ import annotations

import asyncio

import httpx

from tests.security.helpers import PASSWORD, all_users, conversation, user
from tui_chat_dev.wsclient import WsClient


def lookalikes(name: str) -> dict[str, str]:
    """Spellings of ``name`` that a person could mistake for it (or that hide something)."""
    return {
        "cyrillic a": name.replace("a", "\u0430", 1),
        "fullwidth": "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in name),
        "fullwidth uppercase first": chr(ord(name[0].upper()) + 0xFEE0) + name[1:],
        "zero-width joiner": name[:2] + "\u200d" + name[2:],
        "zero-width space": name + "\u200b",
        "rtl override": "\u202e" + name,
        "nul": name + "\x00",
        "newline": name + "\n",
        "ansi escape": "\x1b[31m" + name,
        "combining acute": name[:1] + "\u0301" + name[1:],
        "dotted capital I": "\u0130" + name[1:],
        "long s": name.replace("s", "\u017f", 1) if "s" in name else "\u017f" + name,
        "leading space": " " + name,
        "trailing tab": name + "\t",
    }


async def test_lookalike_usernames_are_refused_and_create_no_account(server, names):
    name = names("kalsa")  # has a 'k' (Kelvin sign), an 'a' (Cyrillic) and an 's' (long s)
    watcher = await user(server, names, "watch")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.post("/auth/signup", json={"username": name, "password": PASSWORD})).status_code == 201
        users_before = set(await all_users(watcher))
        for what, spelling in lookalikes(name).items():
            created = await http.post("/auth/signup", json={"username": spelling, "password": PASSWORD})
            assert created.status_code == 400 and "username" in created.json()["error"], what
            # login answers an impossible name like a wrong password: one 401 for every failure
            login = await http.post("/auth/login", json={"username": spelling, "password": PASSWORD})
            assert login.status_code == 401 and "token" not in login.json(), what
        # spellings that lowercase to the name are the same account: taken at sign-up, the account at login
        for spelling in (name.upper(), name.title(), "\u212a" + name[1:]):
            assert (await http.post("/auth/signup", json={"username": spelling, "password": PASSWORD})).status_code == 409
            login = await http.post("/auth/login", json={"username": spelling, "password": PASSWORD})
            assert login.status_code == 200 and login.json()["user"] == name
        assert set(await all_users(watcher)) == users_before, "no second account"
        # a look-alike of a free name is refused too, and does not reserve the real name
        free = names("fresh")
        assert (await http.post("/auth/signup", json={"username": lookalikes(free)["fullwidth"], "password": PASSWORD})).status_code == 400
        assert (await http.post("/auth/signup", json={"username": free, "password": PASSWORD})).status_code == 201


async def test_case_variants_signing_up_at_once_make_one_account(server, names):
    name = names("twin")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        spellings = [name, name.upper(), name.title(), name, name.upper(), name.capitalize()]
        answers = await asyncio.gather(*(http.post("/auth/signup", json={"username": s, "password": PASSWORD}) for s in spellings))
        assert sorted(a.status_code for a in answers) == [201] + [409] * 5
        assert (await http.post("/auth/login", json={"username": name, "password": PASSWORD})).status_code == 200


# -- SQL and DynamoDB metacharacters ------------------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE messages; --", "Robert'); DROP TABLE users;--", "' OR '1'='1", '" OR ""="', "1 OR 1=1",
    "' UNION SELECT password_hash, username FROM users --", "%", "_", "%_%", "\\", "\\'", "?", "?1", ":u", "$1",
    "#u", ":cap", '{"S": "x"}', '{"N": "1"}', "attribute_exists(pk)", "*/ SELECT 1 /*", "\r\n\t", "NULL", "",
]  # fmt: skip


async def test_sql_metacharacters_in_names_and_passwords(server, names):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        for bad in ("x' OR '1'='1", "admin'--", "a; DROP TABLE users", "a%", "a_%", 'a"b', "a\\b", "a/*b*/"):
            assert (await http.post("/auth/signup", json={"username": bad, "password": PASSWORD})).status_code == 400
            assert (await http.post("/auth/login", json={"username": bad, "password": "' OR '1'='1"})).status_code == 401
        # names may hold '-', '.' and '_', which mean something to SQL LIKE and comments: kept literally
        dashes, underscores = f"{names('a')}--", f"{names('b')}__"
        for name, password in ((dashes, "p'; DROP TABLE users; --"), (underscores, '" OR ""=" %_\\')):
            assert (await http.post("/auth/signup", json={"username": name, "password": password})).status_code == 201
            assert (await http.post("/auth/login", json={"username": name, "password": password})).status_code == 200
            for guess in ("' OR '1'='1", "%", "_" * len(password), password + "'"):  # four: the fifth would lock it
                assert (await http.post("/auth/login", json={"username": name, "password": guess})).status_code == 401
            assert (await http.post("/auth/login", json={"username": name, "password": password})).status_code == 200


async def test_sql_metacharacters_in_frames_are_stored_and_returned_literally(server, names):
    alice = await user(server, names, "alice")
    bob = await user(server, names, "bob")
    bystander = await user(server, names, "bystander")
    await bystander.request({"action": "sendMessage", "id": "by-0000001", "to": bob.user, "body": "unrelated"})
    bodies = [f"{i}:{text}" for i, text in enumerate(INJECTIONS)]  # a body must not be blank
    ids = ["--------", "________", "1-OR-1--", "x_DROP_TABLE_users--", "a" * 64, "________-"]
    for i, body in enumerate(bodies):
        msg_id = ids[i] if i < len(ids) else f"inj-{i:06d}"
        await alice.send({"action": "sendMessage", "id": msg_id, "to": bob.user, "body": body, "rid": f"'; --{i}"})
        ack = await alice.expect("ack", id=msg_id)
        assert (ack["message"]["body"], ack["rid"]) == (body, f"'; --{i}")
    # '_' is a LIKE wildcard: "________" must be its own message, not a retry of another 8-char id
    assert len({(await bob.expect("message"))["message"]["id"] for _ in bodies}) == len(bodies)
    page = await bob.request({"action": "getMessages", "with": alice.user, "after": 0, "limit": 200})
    assert [m["body"] for m in page["items"]] == bodies and {m["from"] for m in page["items"]} == {alice.user}
    retry = await alice.request({"action": "sendMessage", "id": "________", "to": bob.user, "body": "changed"})
    assert retry["message"]["body"] == bodies[1], "a retry of the id returns the original"

    await bob.request({"action": "getClients"})
    for text in ("'; DROP TABLE users; --", "%_%", '{"S": "x"}', ":u #u"):
        await alice.send({"action": "setStatus", "status": "away", "text": text})
        assert (await bob.expect("presence", user=alice.user, text=text))["status"] == "away"
    assert (await all_users(bob))[alice.user]["text"] == ":u #u"
    for cursor in ("0:' OR '1'='1", "9223372036854775807:%", "-1:_"):
        listed = await bob.request({"action": "getConversations", "cursor": cursor})
        assert listed["type"] == "error" or {c["with"] for c in listed["items"]} <= {alice.user, bystander.user}

    # nothing else moved: the bystander's conversation and everyone's accounts are intact
    assert (await conversation(bob, bystander.user))["last"]["body"] == "unrelated"
    assert {alice.user, bob.user, bystander.user} <= set(await all_users(bob))
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        logins = [await http.post("/auth/login", json={"username": u.user, "password": PASSWORD}) for u in (alice, bob, bystander)]
    assert [r.status_code for r in logins] == [200, 200, 200]
    again = await WsClient.open(server.ws_url, logins[2].json()["token"], bystander.user, "device-0002")
    assert (await again.request({"action": "getMessages", "with": bob.user}))["items"][0]["body"] == "unrelated"
