// Starts @modelcontextprotocol/server-everything (`streamableHttp` or `sse`) on 127.0.0.1 only:
// the package listens on every interface, so net.Server#listen is pinned to loopback first.
// Usage: PORT=<port> node everything.mjs <streamableHttp|sse>   (NODE_PATH: the peers' node_modules)
import net from "node:net";
import { createRequire } from "node:module";
import path from "node:path";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || typeof args[0] === "string") {
    const port = Number(args[0]);
    const rest = args.slice(1).filter((a) => typeof a === "function");
    return listen.call(this, port, "127.0.0.1", ...rest);
  }
  return listen.apply(this, args);
};

const transport = process.argv[2] || "streamableHttp";
const require = createRequire(path.join(process.env.PEERS_DIR, "package.json"));
const entry = require.resolve("@modelcontextprotocol/server-everything/dist/index.js");
process.argv = [process.argv[0], entry, transport];
await import(entry);
