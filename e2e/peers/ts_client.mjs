// A real MCP client (the official TypeScript SDK) for the gateway's interop tests.
// Usage: node ts_client.mjs <url> <token> <tool> <args-json> [<progress-tool> <progress-args-json>]
// Prints one JSON line: tools, the tool's first text content, and progress seen before the result.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.PEERS_DIR, "package.json"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { CallToolResultSchema } = require("@modelcontextprotocol/sdk/types.js");

const [url, token, tool, toolArgs, progressTool, progressArgs] = process.argv.slice(2);
const events = [];
try {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: "ts-interop", version: "1.0.0" });
  await client.connect(transport);
  const tools = await client.listTools();
  const called = await client.callTool({ name: tool, arguments: JSON.parse(toolArgs) });
  let progressResult = null;
  if (progressTool) {
    const result = await client.callTool(
      { name: progressTool, arguments: JSON.parse(progressArgs) },
      CallToolResultSchema,
      { onprogress: (p) => events.push(["progress", p.progress]) },
    );
    events.push(["result", null]);
    progressResult = result.content?.[0]?.text ?? null;
  }
  await transport.terminateSession().catch(() => {});
  await client.close();
  console.log(JSON.stringify({
    tools: tools.tools.map((t) => t.name).sort(),
    text: called.content?.[0]?.text ?? null,
    progress: events.filter(([k]) => k === "progress").map(([, p]) => p),
    progress_result: progressResult,
    progress_before_result: events.length > 0 && events[events.length - 1][0] === "result",
  }));
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String(e?.message ?? e) }));
  process.exit(1);
}
