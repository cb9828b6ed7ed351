"""A real MCP client (Python SDK 2.x) for the gateway's interop tests.

Connects to --url with `Authorization: Bearer --token`, lists tools, calls echo, add and slow
(recording progress), and prints one JSON line with what it saw. Exit status 0 on success.
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
args = parser.parse_args()


async def main():
    events = []

    async def on_progress(progress, total, message):
        events.append(("progress", progress))

    headers = {"Authorization": f"Bearer {args.token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with Client(streamable_http_client(args.url, http_client=http), mode=args.mode) as client:
            tools = await client.list_tools()
            echo = await client.call_tool("echo", {"text": "hi"})
            add = await client.call_tool("add", {"a": 2, "b": 3})
            slow = await client.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
            events.append(("result", None))
    out = {
        "tools": sorted(t.name for t in tools.tools),
        "echo": echo.content[0].text,
        "add": add.content[0].text,
        "slow": slow.content[0].text,
        "progress": [p for kind, p in events if kind == "progress"],
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
