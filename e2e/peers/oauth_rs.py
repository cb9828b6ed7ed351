"""An OAuth-protected MCP server (streamable HTTP at /mcp) for the gateway's interop tests.

Built on the official Python MCP SDK 1.x (FastMCP) and its own resource-server auth support:
`FastMCP(token_verifier=..., auth=AuthSettings(...))`. The SDK serves the RFC 9728 protected
resource metadata at /.well-known/oauth-protected-resource/mcp and answers requests without a
valid token with 401 and `WWW-Authenticate: Bearer error="invalid_token", ...,
resource_metadata="<PRM URL>"` (403 `insufficient_scope` when the token lacks scope `mcp`).

    python oauth_rs.py --port N --as http://127.0.0.1:M [--resource URL]

The token verifier introspects every bearer token at the AS's introspection endpoint (RFC 7662,
client `rs` / `rs-secret`, client_secret_basic). A token is accepted only if it is active, not
expired, and its `aud` contains the resource URL exactly (RFC 8707). Prints `READY` once listening.

Tools: whoami -> JSON text {"sub": <introspected sub>, "client_id": <introspected client_id>};
echo(text) -> text.
"""

import argparse
import asyncio
import json
import logging
import sys
import time

import httpx
import uvicorn
from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.fastmcp import FastMCP

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--as", dest="issuer", required=True, help="authorization server issuer URL")
parser.add_argument("--resource", default=None, help="resource URL (default http://127.0.0.1:PORT/mcp)")
parser.add_argument("--client-id", default="rs")
parser.add_argument("--client-secret", default="rs-secret")
args = parser.parse_args()

ISSUER = args.issuer.rstrip("/")
RESOURCE = args.resource or f"http://127.0.0.1:{args.port}/mcp"
REQUIRED_SCOPE = "mcp"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class IntrospectionTokenVerifier:
    """RFC 7662 introspection against the AS, with a strict RFC 8707 audience check."""

    def __init__(self, issuer: str, resource: str, client_id: str, client_secret: str):
        self.issuer = issuer
        self.resource = resource
        self.auth = (client_id, client_secret)
        self._endpoint: str | None = None
        self._http = httpx.AsyncClient(timeout=10)

    async def endpoint(self) -> str:
        if self._endpoint is None:
            for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
                r = await self._http.get(self.issuer + path)
                if r.status_code == 200 and r.json().get("introspection_endpoint"):
                    self._endpoint = r.json()["introspection_endpoint"]
                    break
            else:
                raise RuntimeError(f"no introspection_endpoint in {self.issuer} metadata")
        return self._endpoint

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            r = await self._http.post(await self.endpoint(), data={"token": token}, auth=self.auth)
        except Exception as e:  # noqa: BLE001
            log("introspection failed:", e)
            return None
        if r.status_code != 200:
            log("introspection HTTP", r.status_code, r.text[:200])
            return None
        data = r.json()
        if not data.get("active"):
            return None
        exp = data.get("exp")
        if exp is not None and int(exp) <= int(time.time()):
            return None
        aud = data.get("aud")
        auds = aud if isinstance(aud, list) else ([aud] if aud else [])
        if self.resource not in auds:
            log(f"token aud {auds!r} does not contain {self.resource!r}")
            return None
        iss = data.get("iss")
        if iss is not None and iss.rstrip("/") != self.issuer:
            log(f"token iss {iss!r} is not {self.issuer!r}")
            return None
        return AccessToken(
            token=token,
            client_id=data.get("client_id") or "",
            scopes=(data.get("scope") or "").split(),
            expires_at=int(exp) if exp is not None else None,
            resource=self.resource,
            subject=data.get("sub"),
            claims={k: v for k, v in data.items() if k not in ("active",)},
        )


# Keep a path-less issuer without a trailing slash: pydantic's AnyHttpUrl would turn
# http://127.0.0.1:N into http://127.0.0.1:N/ in the PRM's authorization_servers, which then no
# longer equals the AS metadata's `issuer` (RFC 8414 compares them as exact strings). A Url
# validated with url_preserve_empty_path passes through AuthSettings and the PRM model unchanged.
_url = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))

verifier = IntrospectionTokenVerifier(ISSUER, RESOURCE, args.client_id, args.client_secret)

mcp = FastMCP(
    "oauth-rs",
    host="127.0.0.1",
    port=args.port,
    token_verifier=verifier,
    auth=AuthSettings(
        issuer_url=_url.validate_python(ISSUER),
        resource_server_url=_url.validate_python(RESOURCE),
        required_scopes=[REQUIRED_SCOPE],
        validate_token_resource=True,
    ),
)


@mcp.tool()
def whoami() -> str:
    """Who the bearer token belongs to: {"sub", "client_id"} from token introspection."""
    tok = get_access_token()
    return json.dumps({"sub": tok.subject if tok else None, "client_id": tok.client_id if tok else None})


@mcp.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


app = mcp.streamable_http_app()
logging.getLogger("httpx").setLevel(logging.WARNING)


async def main() -> None:
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.02)
        print("READY", flush=True)

    await asyncio.gather(server.serve(), announce())


asyncio.run(main())
