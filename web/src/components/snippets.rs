//! Copy-paste client configurations for one MCP endpoint, shared by the admin's servers page
//! and the user portal.

use leptos::prelude::*;

use crate::components::widgets::CopyButton;

/// A Python SDK (2.x) client that lists the endpoint's tools with an API key from the
/// environment.
pub fn python_client(url: &str) -> String {
    format!(
        r#"import asyncio
import os

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

URL = "{url}"
HEADERS = {{"Authorization": f"Bearer {{os.environ['GATEWAY_API_KEY']}}"}}


async def main():
    async with httpx2.AsyncClient(headers=HEADERS, timeout=30) as http:
        async with Client(streamable_http_client(URL, http_client=http)) as client:
            tools = await client.list_tools()
            print([tool.name for tool in tools.tools])


asyncio.run(main())
"#
    )
}

/// The same with the TypeScript SDK (an ES module).
pub fn typescript_client(url: &str) -> String {
    format!(
        r#"import {{ Client }} from "@modelcontextprotocol/sdk/client/index.js";
import {{ StreamableHTTPClientTransport }} from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const transport = new StreamableHTTPClientTransport(new URL("{url}"), {{
  requestInit: {{ headers: {{ Authorization: `Bearer ${{process.env.GATEWAY_API_KEY}}` }} }},
}});
const client = new Client({{ name: "my-app", version: "1.0.0" }});
await client.connect(transport);
console.log((await client.listTools()).tools.map((t) => t.name));
await client.close();
"#
    )
}

/// Claude Code's command, the `mcpServers` form (Cursor, Claude Code's `.mcp.json` and most
/// clients), VS Code's `servers` form, Claude Desktop (through `mcp-remote`) and the SDKs.
/// OAuth needs only the URL; the API-key forms read the key from the environment or a prompt,
/// never from the file. Element ids end in `-{name}`.
#[component]
pub fn ClientSnippets(name: String, url: String) -> impl IntoView {
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).unwrap_or_default();
    let common = pretty(serde_json::json!({
        "mcpServers": { name.clone(): { "type": "http", "url": url } }
    }));
    let vscode = pretty(serde_json::json!({
        "servers": { name.clone(): { "type": "http", "url": url } }
    }));
    let desktop = pretty(serde_json::json!({
        "mcpServers": { name.clone(): { "command": "npx", "args": ["-y", "mcp-remote", url] } }
    }));
    let common_key = pretty(serde_json::json!({
        "mcpServers": { name.clone(): { "type": "http", "url": url,
            "headers": { "Authorization": "Bearer ${GATEWAY_API_KEY}" } } }
    }));
    let vscode_key = pretty(serde_json::json!({
        "inputs": [{ "type": "promptString", "id": "gateway-key", "description": "AuthMCP Gateway API key", "password": true }],
        "servers": { name.clone(): { "type": "http", "url": url,
            "headers": { "Authorization": "Bearer ${input:gateway-key}" } } }
    }));
    let claude = format!("claude mcp add --transport http {name} {url}");
    let python = python_client(&url);
    let typescript = typescript_client(&url);
    let id = |kind: &str| format!("snippet-{kind}-{name}");
    view! {
        <details class="snippets">
            <summary id=id("open")>"Client configuration"</summary>
            <p class="muted">"Clients that sign in with OAuth (Claude Code, Cursor, VS Code, the SDKs) need only the URL: they open the gateway's consent page on first use."</p>
            <p>"Claude Code:"</p>
            <pre id=id("claude-code")>{claude.clone()}</pre>
            <CopyButton text=claude />
            <p>"Cursor, Claude Code's " <code>".mcp.json"</code> " and other " <code>"mcpServers"</code> " configurations:"</p>
            <pre id=id("mcp-servers")>{common.clone()}</pre>
            <CopyButton text=common />
            <p>"VS Code (" <code>".vscode/mcp.json"</code> "):"</p>
            <pre id=id("vscode")>{vscode.clone()}</pre>
            <CopyButton text=vscode />
            <p>"Claude Desktop (" <code>"claude_desktop_config.json"</code> ", through " <code>"mcp-remote"</code> "; or add the URL under Settings → Connectors):"</p>
            <pre id=id("claude-desktop")>{desktop.clone()}</pre>
            <CopyButton text=desktop />
            <details>
                <summary id=id("open-key")>"With an API key instead of OAuth"</summary>
                <p class="muted">"The key stays out of the file: an environment variable (" <code>"GATEWAY_API_KEY"</code> "), or VS Code's prompt."</p>
                <pre id=id("mcp-servers-key")>{common_key.clone()}</pre>
                <CopyButton text=common_key />
                <pre id=id("vscode-key")>{vscode_key.clone()}</pre>
                <CopyButton text=vscode_key />
                <p>"Python SDK 2.x (" <code>"pip install 'mcp>=2'"</code> "):"</p>
                <pre id=id("python")>{python.clone()}</pre>
                <CopyButton text=python />
                <p>"TypeScript SDK (" <code>"npm install @modelcontextprotocol/sdk"</code> "):"</p>
                <pre id=id("typescript")>{typescript.clone()}</pre>
                <CopyButton text=typescript />
            </details>
            <p class="muted">"Cloud-hosted clients (claude.ai custom connectors, ChatGPT) reach the gateway from the internet: its PUBLIC_URL must be publicly reachable over https. See docs/CLIENTS.md."</p>
        </details>
    }
}
