"""A real MCP client (Python SDK 2.x) that logs in to the gateway with the SDK's own OAuth.

Connects to --url with `mcp.client.auth.OAuthClientProvider` as the httpx2 auth: on the 401 the
SDK discovers the protected resource metadata (from `WWW-Authenticate: Bearer resource_metadata=`),
the authorization server metadata, registers the client (DCR), and runs the authorization-code
grant with PKCE, `resource` and an RFC 9207 `iss` check. The browser step is done headlessly:

  1. GET the authorization URL the SDK built (no redirect following). The gateway answers
     `303 Location: <issuer>/consent?request=<opaque>` (the admin UI's consent page), or, when consent is remembered,
     `302 Location: <redirect_uri>?code=...&state=...&iss=...`.
  2. For the consent page: POST `{"request", "username", "password", "approve"}` as JSON to
     `<issuer>/oauth/api/decision` with `Origin: <issuer origin>`; the 200 JSON answer carries
     `redirect_to` (the redirect URI with code/state/iss, or error=access_denied).
  3. Hand code/state/iss to the SDK through its callback handler. Nothing listens on the loopback
     redirect URI: the redirect is never followed.

Then it lists tools, calls --tool with --args, makes the held access token look expired through
the provider's own context (`token_expiry_time`) so that the SDK itself sends a refresh_token
grant before the next request, calls the tool again, and prints one JSON line:

  {"tools", "text", "text_after_refresh", "refreshed", "access_token_changed", "client_id",
   "token_requests", "denied"}

With --decision deny the consent is refused; the script expects redirect_to to carry
error=access_denied and the SDK's flow to fail, prints {"denied": true, ...} and exits 0.
On any other failure it prints {"error": "Type: message"} and exits 1.
"""

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--url", required=True, help="MCP endpoint, e.g. http://127.0.0.1:PORT/mcp")
parser.add_argument("--username", required=True)
parser.add_argument("--password", required=True)
parser.add_argument("--tool", default="echo")
parser.add_argument("--args", default='{"text": "hi"}', help="JSON arguments for --tool")
parser.add_argument("--mode", default="auto", help="auto | legacy | 2026-07-28")
parser.add_argument("--decision", choices=["approve", "deny"], default="approve")
parser.add_argument(
    "--redirect-uri",
    default="http://127.0.0.1:33418/callback",
    help="loopback redirect URI to register (nothing needs to listen there)",
)
parser.add_argument(
    "--token-auth-method",
    choices=["none", "client_secret_post", "client_secret_basic", "omit"],
    default="none",
    help="token_endpoint_auth_method to request at registration ('omit' leaves it out)",
)
args = parser.parse_args()


class AccessDenied(Exception):
    """The authorization server answered the consent decision with error=access_denied."""


class MemoryStorage:
    """The SDK's `TokenStorage` protocol, in memory, counting token saves."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.token_saves = 0

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.token_saves += 1

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


state = {"denied": False, "browser_steps": []}
token_requests: list[dict] = []  # {"grant_type", "status"} per token-endpoint POST, in order


def _same_endpoint(a: str, b: str) -> bool:
    pa, pb = urlparse(a), urlparse(b)
    return (pa.scheme, pa.netloc, pa.path) == (pb.scheme, pb.netloc, pb.path)


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


async def on_request(request: httpx2.Request) -> None:
    # Every request the auth flow makes goes through the client's hooks, token requests included.
    if request.method == "POST" and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        form = parse_qs(request.content.decode())
        grant = _one(form, "grant_type")
        if grant:
            request.extensions["oauth_client_entry"] = entry = {"grant_type": grant, "status": None}
            token_requests.append(entry)


async def on_response(response: httpx2.Response) -> None:
    entry = response.request.extensions.get("oauth_client_entry")
    if entry is not None:
        entry["status"] = response.status_code


async def main() -> dict:
    storage = MemoryStorage()
    callback_result: dict = {}
    provider: OAuthClientProvider | None = None

    async def redirect_handler(authorization_url: str) -> None:
        """The headless browser: follows the authorization URL up to the redirect URI."""
        callback_result.clear()
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:
            resp = await browser.get(authorization_url)
            state["browser_steps"].append(f"GET authorize -> {resp.status_code}")
            if resp.status_code not in (301, 302, 303, 307, 308) or "location" not in resp.headers:
                raise RuntimeError(f"authorization endpoint answered {resp.status_code}: {resp.text[:300]}")
            location = urljoin(authorization_url, resp.headers["location"])

            if _same_endpoint(location, args.redirect_uri):
                redirect_to = location  # consent remembered
            else:
                consent = urlparse(location)
                opaque = _one(parse_qs(consent.query), "request")
                if not consent.path.endswith("/consent") or not opaque:
                    raise RuntimeError(f"unexpected authorization redirect: {location}")
                # The decision API lives under the issuer; without AS metadata (the SDK's
                # legacy fallback), take the consent page's own base instead.
                if provider.context.oauth_metadata is not None:
                    issuer = str(provider.context.oauth_metadata.issuer).rstrip("/")
                else:
                    issuer = f"{consent.scheme}://{consent.netloc}{consent.path[: -len('/consent')]}"
                iss = urlparse(issuer)
                origin = f"{iss.scheme}://{iss.netloc}"
                decision = await browser.post(
                    f"{issuer}/oauth/api/decision",
                    json={
                        "request": opaque,
                        "username": args.username,
                        "password": args.password,
                        "approve": args.decision == "approve",
                    },
                    headers={"Origin": origin},
                )
                state["browser_steps"].append(f"POST decision -> {decision.status_code}")
                if decision.status_code != 200:
                    raise RuntimeError(f"consent decision answered {decision.status_code}: {decision.text[:300]}")
                redirect_to = decision.json()["redirect_to"]

            if not _same_endpoint(redirect_to, args.redirect_uri):
                raise RuntimeError(f"redirect_to is not our redirect URI: {redirect_to}")
            query = parse_qs(urlparse(redirect_to).query)
            callback_result.update({k: _one(query, k) for k in ("code", "state", "iss", "error")})

    async def callback_handler() -> AuthorizationCodeResult:
        if callback_result.get("error"):
            if callback_result["error"] == "access_denied":
                state["denied"] = True
                raise AccessDenied(f"authorization denied: {callback_result}")
            raise RuntimeError(f"authorization error: {callback_result}")
        if not callback_result.get("code"):
            raise RuntimeError(f"no code in the authorization response: {callback_result}")
        return AuthorizationCodeResult(
            code=callback_result["code"], state=callback_result.get("state"), iss=callback_result.get("iss")
        )

    metadata = OAuthClientMetadata(
        client_name="mcp-gateway e2e oauth_client.py",
        redirect_uris=[args.redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method=None if args.token_auth_method == "omit" else args.token_auth_method,
    )
    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )

    hooks = {"request": [on_request], "response": [on_response]}
    async with httpx2.AsyncClient(auth=provider, timeout=30, event_hooks=hooks) as http:
        async with Client(streamable_http_client(args.url, http_client=http), mode=args.mode) as client:
            tools = await client.list_tools()
            called = await client.call_tool(args.tool, json.loads(args.args))

            first_token = provider.context.current_tokens
            if first_token is None:
                raise RuntimeError("no access token held after the first call")
            if not first_token.refresh_token:
                raise RuntimeError("the token response carried no refresh_token")
            saves_before = storage.token_saves
            requests_before = len(token_requests)
            # Make the held token look expired through the provider's own state: its next
            # request finds `is_token_valid()` false and `can_refresh_token()` true, and sends
            # the refresh_token grant itself before attaching the (new) bearer.
            provider.context.token_expiry_time = time.time() - 1

            again = await client.call_tool(args.tool, json.loads(args.args))
            second_token = provider.context.current_tokens

    after = token_requests[requests_before:]
    refreshed = (
        any(t["grant_type"] == "refresh_token" and t["status"] == 200 for t in after)
        and not any(t["grant_type"] == "authorization_code" for t in after)
        and storage.token_saves > saves_before
    )
    return {
        "tools": sorted(t.name for t in tools.tools),
        "text": called.content[0].text,
        "text_after_refresh": again.content[0].text,
        "refreshed": refreshed,
        "access_token_changed": second_token is not None
        and second_token.access_token != first_token.access_token,
        "client_id": storage.client_info.client_id if storage.client_info else None,
        "token_requests": [t["grant_type"] for t in token_requests],
        "denied": False,
    }


try:
    out = asyncio.run(main())
except BaseException as e:  # noqa: BLE001 - report any failure as one line
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        raise
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    if args.decision == "deny" and state["denied"]:
        print(
            json.dumps(
                {
                    "denied": True,
                    "sdk_error": f"{type(e).__name__}: {e}",
                    "token_requests": [t["grant_type"] for t in token_requests],
                }
            )
        )
        sys.exit(0)
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    sys.exit(1)
if args.decision == "deny":
    print(json.dumps({"error": f"RuntimeError: consent was denied but the session worked: {out}"}))
    sys.exit(1)
print(json.dumps(out))
