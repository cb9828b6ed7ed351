"""A real MCP client (Python SDK 2.x) for the gateway's interop tests.

Connects to --url with `Authorization: Bearer --token` in --mode (auto, legacy, 2026-07-28),
lists tools, calls --tool with --args, then --progress-tool with --progress-args while
recording progress, and prints one JSON line with what it saw. Exit status 0 on success.
"""

import argparse
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

parser = argparse.ArgumentParser()
parser.add_argument("--url", required=True)
parser.add_argument("--token", required=True)
parser.add_argument("--mode", default="auto")
parser.add_argument("--tool", default="echo")
parser.add_argument("--args", default='{"text": "hi"}')
parser.add_argument("--progress-tool", default="slow")
parser.add_argument("--progress-args", default='{"steps": 3}')
args = parser.parse_args()


async def main():
    events = []

    async def on_progress(progress, total, message):
        events.append(("progress", progress))

    headers = {"Authorization": f"Bearer {args.token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(args.url, http_client=http), mode=args.mode) as client:
            tools = await client.list_tools()
            called = await client.call_tool(args.tool, json.loads(args.args))
            slow = await client.call_tool(
                args.progress_tool, json.loads(args.progress_args), progress_callback=on_progress
            )
            events.append(("result", None))
    out = {
        "tools": sorted(t.name for t in tools.tools),
        "text": called.content[0].text,
        "progress": [p for kind, p in events if kind == "progress"],
        "progress_result": slow.content[0].text,
        "progress_before_result": [kind for kind, _ in events][-1] == "result",
    }
    print(json.dumps(out))


try:
    asyncio.run(main())
except Exception as e:  # noqa: BLE001 - report any failure as one line
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    sys.exit(1)
