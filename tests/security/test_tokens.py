"""Access and refresh tokens against a real server: every forgery and misuse is refused at the
handshake, and a refused attempt changes nothing another user can see."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.security.helpers import all_users, b64, claims, handshake_status, hs256, secret_of, server_errors, user
from tui_chat_dev.wsclient import WsClient, signup


def forged_tokens(secret: bytes, victim: str, sid: str, bob_token: str, refresh_token: str, info: bytes) -> dict[str, str]:
    """Tokens for ``victim`` that a correct server must refuse, by what is wrong with them."""
    valid = hs256(secret, claims(victim, sid=sid))
    head, payload, signature = valid.split(".")
    other_sig = bob_token.split(".")[2]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    return {
        # signatures
        "signature altered": f"{head}.{payload}.{flipped}",
        "signature stripped": f"{head}.{payload}.",
        "another user's signature": f"{head}.{payload}.{other_sig}",
        "alg none": b64({"alg": "none", "typ": "JWT"}) + f".{payload}.",
        "alg None, real signature kept": b64({"alg": "None"}) + f".{payload}.{signature}",
        "alg NONE": b64({"alg": "NONE"}) + f".{payload}.",
        # algorithm confusion: HMAC keyed with values an attacker can know
        "HS256 keyed with an empty key": hs256(b"", claims(victim, sid=sid)),
        "HS256 keyed with the issuer name": hs256(b"tui-chat", claims(victim, sid=sid)),
        "HS256 keyed with GET /info": hs256(info, claims(victim, sid=sid)),
        "HS256 keyed with a public RSA key": hs256(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()).encode(), claims(victim, sid=sid)),
        "RS256 header on a real HMAC": hs256(secret, claims(victim, sid=sid), {"alg": "RS256", "typ": "JWT"}),
        "ES256 header on a real HMAC": hs256(secret, claims(victim, sid=sid), {"alg": "ES256", "typ": "JWT"}),
        "HS512 with the real secret": jwt.encode(claims(victim, sid=sid), secret, algorithm="HS512"),
        "RS256 with an embedded jwk": jwt.encode(claims(victim, sid=sid), rsa_key, algorithm="RS256", headers={"jwk": jwk}),
        "RS256 with a jku to 127.0.0.1": jwt.encode(claims(victim, sid=sid), rsa_key, algorithm="RS256", headers={"jku": "http://127.0.0.1:9/jwks.json", "kid": "k1"}),
        "ES256 with an attacker key": jwt.encode(claims(victim, sid=sid), ec_key, algorithm="ES256"),
        "kid pointing at /dev/null, empty key": hs256(b"", claims(victim, sid=sid), {"alg": "HS256", "kid": "../../../../../dev/null"}),
        "kid naming the secret file, attacker key": hs256(b"attacker" * 4, claims(victim, sid=sid), {"alg": "HS256", "kid": "server.db.secret"}),
        # claims, under the real secret
        "expired": hs256(secret, claims(victim, sid=sid, iat=int(time.time()) - 7200, exp=int(time.time()) - 1)),
        "no exp": hs256(secret, claims(victim, sid=sid, exp=None)),
        "no iat": hs256(secret, claims(victim, sid=sid, iat=None)),
        "wrong audience": hs256(secret, claims(victim, sid=sid, aud="another-app")),
        "audience list without ours": hs256(secret, claims(victim, sid=sid, aud=["another-app"])),
        "wrong issuer": hs256(secret, claims(victim, sid=sid, iss="https://evil.example")),
        "no issuer": hs256(secret, claims(victim, sid=sid, iss=None)),
        "open-mode token": hs256(secret, claims(victim, sid=sid, mode="open", dev="device-0001")),
        "no mode": hs256(secret, claims(victim, sid=sid, mode=None)),
        "sub not a username": hs256(secret, claims(f"{victim}#bob")),
        "sub not a string": hs256(secret, claims(victim, sid=sid) | {"sub": [victim]}),
        # sessions
        "no session": hs256(secret, claims(victim)),
        "a made-up session": hs256(secret, claims(victim, sid="A" * 22)),
        "the session of another user": hs256(secret, claims(victim, sid=jwt.decode(bob_token, options={"verify_signature": False})["sid"])),
        # not access tokens at all
        "a refresh token": refresh_token,
        "garbage": "not-a-jwt",
        "three empty parts": "..",
    }


async def test_forged_and_misused_access_tokens_are_refused_and_change_nothing(server, names):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        victim = names("victim")
        issued = (await http.post("/auth/signup", json={"username": victim, "password": "correct horse"})).json()
        info = (await http.get("/info")).content
    watcher = await user(server, names, "watch")
    await watcher.request({"action": "getClients"})  # subscribes the watcher to presence
    sid = jwt.decode(issued["token"], options={"verify_signature": False})["sid"]
    tokens = forged_tokens(secret_of(server), victim, sid, await signup(server.http_url, names("bob")), issued["refreshToken"], info)

    statuses = {what: await handshake_status(server, token) for what, token in tokens.items()}
    assert {what: s for what, s in statuses.items() if s != 401} == {}, "every forgery is a 401"

    # Nothing happened as the victim: no presence, never seen online, no conversation with the watcher.
    assert not [f for f in await watcher.drain() if f.get("user") == victim]
    seen = (await all_users(watcher))[victim]
    assert (seen["status"], seen["lastSeen"]) == ("offline", None)
    assert (await watcher.request({"action": "getMessages", "with": victim}))["items"] == []
    assert not server_errors(server), "a refused handshake is not a server error"

    # Control: the same recipe with every part right is accepted, so each refusal above was for its one flaw.
    accepted = await WsClient.open(server.ws_url, hs256(secret_of(server), claims(victim, sid=sid)), victim)
    assert (await accepted.request({"action": "ping"}))["type"] == "pong"
    await accepted.close()


async def test_a_well_signed_token_for_a_user_that_does_not_exist_is_refused_and_creates_nobody(server, names):
    ghost = names("ghost")
    assert await handshake_status(server, hs256(secret_of(server), claims(ghost, sid="G" * 22))) == 401, "no session was ever started"
    watcher = await user(server, names, "watch")
    assert ghost not in await all_users(watcher)
    assert (await watcher.request({"action": "getMessages", "with": ghost}))["code"] == "unknown_user"
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        created = await http.post("/auth/signup", json={"username": ghost, "password": "correct horse"})
    assert created.status_code == 201, "the name was never taken by the refused handshake"


async def test_an_access_token_is_not_a_refresh_token(server, names):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        issued = (await http.post("/auth/signup", json={"username": names("acc"), "password": "correct horse"})).json()
        for wrong in (issued["token"], issued["token"][:256], issued["refreshToken"].upper(), issued["refreshToken"][:-1]):
            refused = await http.post("/auth/refresh", json={"refreshToken": wrong})
            assert refused.status_code in (400, 401) and "token" not in refused.json()
        # none of those spent the real refresh token
        assert (await http.post("/auth/refresh", json={"refreshToken": issued["refreshToken"]})).status_code == 200


async def test_racing_refreshes_of_one_token_rotate_it_once(server, names):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        name = names("race")
        issued = (await http.post("/auth/signup", json={"username": name, "password": "correct horse"})).json()
        answers = await asyncio.gather(*(http.post("/auth/refresh", json={"refreshToken": issued["refreshToken"]}) for _ in range(8)))
        assert [a.status_code for a in answers] == [200] * 8, "all within the retry grace"
        winners = [a.json() for a in answers]
        assert all(w == winners[0] for w in winners), "one rotation: every racer got the same new pair"
        assert jwt.decode(winners[0]["token"], options={"verify_signature": False})["sub"] == name
        assert (await http.post("/auth/refresh", json={"refreshToken": winners[0]["refreshToken"]})).status_code == 200


# -- login throttling (test_accounts_http.py covers the basic 429 and a bystander) ---------------


async def test_concurrent_guesses_get_no_more_than_the_limit(server, names):
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        name = names("para")
        await http.post("/auth/signup", json={"username": name, "password": "right password"})
        guesses = await asyncio.gather(*(http.post("/auth/login", json={"username": name, "password": f"guess {i}"}) for i in range(20)))
        statuses = sorted(g.status_code for g in guesses)
        assert statuses.count(401) <= 5, f"only five guesses are checked in a window, not {statuses.count(401)}"
        assert set(statuses) <= {401, 429}
        assert (await http.post("/auth/login", json={"username": name, "password": "right password"})).status_code == 429


async def test_case_variants_share_one_counter_and_invalid_lookalikes_count_for_nobody(server, names):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        name = names("casey")
        await http.post("/auth/signup", json={"username": name, "password": "right password"})
        for i in range(10):  # look-alikes are not the user's name: refused without counting against it
            lookalike = name.replace("a", "\u0430") if i % 2 else "\uff43" + name[1:]
            assert (await http.post("/auth/login", json={"username": lookalike, "password": f"g{i}"})).status_code == 401
        assert (await http.post("/auth/login", json={"username": name, "password": "right password"})).status_code == 200
        for variant in (name.upper(), name.title(), name, name.upper(), f"{name[:2].upper()}{name[2:]}"):
            assert (await http.post("/auth/login", json={"username": variant, "password": "wrong"})).status_code == 401
        assert (await http.post("/auth/login", json={"username": name, "password": "right password"})).status_code == 429


async def test_a_lockout_answers_alike_for_any_name_and_keeps_signed_in_sessions(server, names):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        name, ghost = names("locked"), names("nobody")
        issued = (await http.post("/auth/signup", json={"username": name, "password": "right password"})).json()
        for target in (name, ghost):
            for i in range(5):
                await http.post("/auth/login", json={"username": target, "password": f"guess {i}"})
        right = await http.post("/auth/login", json={"username": name, "password": "right password"})
        wrong = await http.post("/auth/login", json={"username": name, "password": "wrong"})
        unknown = await http.post("/auth/login", json={"username": ghost, "password": "whatever"})
        assert right.status_code == wrong.status_code == unknown.status_code == 429
        assert right.json() == wrong.json() == unknown.json(), "a lockout reveals neither the password nor the account"
        # whoever is already signed in stays signed in: the lockout only stops password guessing
        refreshed = await http.post("/auth/refresh", json={"refreshToken": issued["refreshToken"]})
        assert refreshed.status_code == 200
    client = await WsClient.open(server.ws_url, refreshed.json()["token"], name)
    assert (await client.request({"action": "ping"}))["type"] == "pong"
    await client.close()


async def test_a_token_header_nested_past_the_recursion_limit_is_a_401_not_a_crash(server, names):
    """A JWT header of 1,200 nested JSON arrays (past Python's recursion limit): with the PyJWT the
    floor once allowed (2.8) it was a RecursionError past the verifier's except (a 500 and a
    traceback); now it is refused alike. (Kept under the 8 KiB a header line may have.)"""
    from tui_chat.server.auth.cognito import CognitoVerifier
    from tui_chat.server.auth.identity import AuthError

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    deep = b'{"alg":"HS256","x":' + b"[" * 1200 + b"]" * 1200 + b"}"
    token = b64(deep) + "." + b64(claims(names("deep"))) + "." + b64(b"sig")
    with pytest.raises(InvalidStatus) as handshake:  # in the header: the URL would be too long for it
        await connect(f"{server.ws_url}?device=deep-device-1", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)
    assert handshake.value.response.status_code == 401
    assert not server_errors(server)
    cognito = CognitoVerifier("eu-west-1", "eu-west-1_pool", "client", fetch_jwks=lambda url: {"keys": []})
    with pytest.raises(AuthError) as refused:
        cognito.verify_token(token)
    assert refused.value.status == 401
