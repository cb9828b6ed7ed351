"""Schemathesis hooks for `openapi::schemathesis_finds_no_contract_failures`.

Each API gets a token of its own audience, taken by signing in as the test's admin
(`ST_BASE`, `ST_USERNAME`, `ST_PASSWORD`), and taken again whenever one stops working (a case
may sign that session out, or shorten token lifetimes). Generated cases never act on the signed-
in admin's own account (`ST_ADMIN_ID`): disabling, demoting, deleting it or setting its password
would sign the whole run out, which tests nothing about the contract.
"""

import json
import os
import re
import urllib.request

import schemathesis

BASE = os.environ["ST_BASE"]
USERNAME = os.environ["ST_USERNAME"]
PASSWORD = os.environ["ST_PASSWORD"]
ADMIN_ID = int(os.environ["ST_ADMIN_ID"])

LOGINS = {
    "admin": "/admin/api/login",
    "portal": "/portal/api/login",
    "mcp": "/auth/login",
}


def audience(path):
    if path.startswith("/admin/api"):
        return "admin"
    if path.startswith("/portal/api") or path.startswith("/oauth/backend/connections"):
        return "portal"
    return "mcp"


def sign_in(which):
    request = urllib.request.Request(
        BASE + LOGINS[which],
        data=json.dumps({"username": USERNAME, "password": PASSWORD}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["access_token"]


@schemathesis.auth(cache_by_key=lambda case, ctx: audience(case.path), refresh_interval=30)
class PerAudience:
    def get(self, case, ctx):
        return sign_in(audience(case.path))

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


USER_PARAMETERS = ("id", "user_id")

# Rules a JSON Schema cannot state. The cases Schemathesis generates are kept on the valid side
# of them (a case that breaks one is refused with 400, rightly, and tests nothing the schema
# says):
# - a password must not contain the username nor be a well-known password (the list is read
#   from the server's source, password.rs, so the two cannot drift);
# - a server's tool limits name each tool once.
_SOURCE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "src", "password.rs")
with open(_SOURCE, encoding="utf-8") as f:
    _text = f.read()
_list = _text[_text.index("COMMON_PASSWORDS: &[&str] = &["):]
COMMON_PASSWORDS = set(re.findall(r'"([^"]*)"', _list[: _list.index("];")]))


def _password_allowed(body, username):
    password = body.get("password") if isinstance(body, dict) else None
    if not isinstance(password, str):
        return True
    lower = password.lower()
    if lower in COMMON_PASSWORDS:
        return False
    return not (isinstance(username, str) and username.lower() in lower)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _body_allowed(path, body):
    if not isinstance(body, dict):
        return True
    if "password" in body:
        # The account whose password it is: named in the body, or the run's own (self-service),
        # or some other account (an admin's reset, where the name is not known here: both).
        username = body.get("username")
        if username is None and path in ("/auth/password", "/portal/api/password"):
            username = USERNAME
        if not _password_allowed(body, username):
            return False
        if isinstance(body.get("new_password"), str) and not _password_allowed(
            {"password": body["new_password"]}, username
        ):
            return False
    if isinstance(body.get("new_password"), str):
        if not _password_allowed({"password": body["new_password"]}, USERNAME):
            return False
    tools = body.get("tools")
    if isinstance(tools, list):
        names = [t.get("tool") for t in tools if isinstance(t, dict)]
        if len(names) != len(set(map(str, names))):
            return False
    if path == "/admin/api/settings":
        # The refresh token outlives the access token: when a case sets one lifetime, it is
        # compared with the other as the run left it, so only cases that set both (in order)
        # or neither are sent.
        access, refresh = body.get("access_token_ttl_secs"), body.get("refresh_token_ttl_secs")
        if (access is None) != (refresh is None):
            return False
        if _number(access) and _number(refresh) and refresh <= access:
            return False
    if path == "/admin/api/rate-limits":
        # An override names exactly the fields of its kind.
        fields = {"user": {"user_id"}, "server": {"server_id"}, "tool": {"server_id", "tool"}}
        for o in body.get("overrides") or []:
            if not isinstance(o, dict) or not isinstance(o.get("kind"), str) or o["kind"] not in fields:
                continue
            named = {k for k in ("user_id", "server_id", "tool") if o.get(k) is not None}
            if named != fields[o["kind"]]:
                return False
    credential = body.get("credential")
    if isinstance(credential, dict) and str(credential.get("type", "")).startswith("oauth"):
        # An OAuth client secret comes with its client id.
        if credential.get("client_secret") is not None and credential.get("client_id") is None:
            return False
    if path == "/admin/api/audits":
        # A scan names a URL or a registered server, not both nor neither.
        if (body.get("url") is None) == (body.get("server_id") is None):
            return False
    return True




def _parameters_allowed(path, path_parameters):
    # The stateful phase links a response's nullable id (a security event's `user_id`) into
    # a path, where `null` is sent as the text "None": it tests nothing the document says.
    if any(value is None for value in (path_parameters or {}).values()):
        return False
    for name in USER_PARAMETERS:
        if name not in (path_parameters or {}):
            continue
        names_a_user = name == "user_id" or path.startswith("/admin/api/users/")
        if names_a_user and str(path_parameters[name]) == str(ADMIN_ID):
            return False
    return True


# `filter_case` sees every case of every phase (the coverage phase's boundary values too, which
# the per-part `filter_*` hooks do not).
@schemathesis.hook
def filter_case(ctx, case):
    path = case.operation.path
    return _parameters_allowed(path, case.path_parameters) and _body_allowed(path, case.body)


SCANS = ("/admin/api/audits", "/admin/api/run-mcp-audit", "/admin/api/export-mcp-audit")
_AUTHORITY = re.compile(r"^(https?://)[^/?#]*", re.IGNORECASE)


# A scan resolves and contacts its target: whatever host a case names, it is sent to a closed
# port on this machine (127.0.0.1:9), so the run reaches neither DNS nor the network and stays
# quick. Refusals by address (403 `forbidden_address`) are still what a case without
# `allow_private` gets.
@schemathesis.hook
def map_case(ctx, case):
    if case.operation.path in SCANS and isinstance(case.body, dict):
        url = case.body.get("url")
        if isinstance(url, str) and _AUTHORITY.match(url):
            case.body = dict(case.body, url=_AUTHORITY.sub(r"\g<1>127.0.0.1:9", url, count=1))
    return case
