// Test peer: a real OAuth 2.1 authorization server built on `oidc-provider` (panva).
//
//   node oauth_as.mjs --port N [--ttl S]
//
// Needs Node >= 22 (oidc-provider 9.x and its dependencies). Resolves `oidc-provider`
// from /work/main/.tools/node-peers/node_modules (or $NODE_PEERS_DIR/node_modules,
// or NODE_PATH-style normal resolution).
//
// Issuer: http://127.0.0.1:N. Prints `READY` once listening.
//
// Features: devInteractions login/consent pages, PKCE S256 required, open dynamic
// client registration, refresh tokens always issued for authorization_code with
// rotation, revocation, introspection, client_credentials, resource indicators
// (any resource URL; opaque access token, aud = resource, scope `mcp`).
//
// Test-control endpoints (outside the provider's routes):
//   GET  /test/stats           -> {"authorization_code","refresh_token","client_credentials","refresh_failures",
//                                  "refresh_by_account": {name: n}}
//   POST /test/reset           -> zero the counters
//   POST /test/revoke-refresh  -> delete every refresh token (or ?account=NAME: only that account's)
// RFC 8414 metadata is served at /.well-known/oauth-authorization-server (same document as
// /.well-known/openid-configuration).

import { generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

// ---------- args ----------
function parseArgs(argv) {
  const out = { port: 0, ttl: 4 };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const next = () => {
      i += 1;
      if (i >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[i];
    };
    if (a === '--port') out.port = Number(next());
    else if (a.startsWith('--port=')) out.port = Number(a.slice(7));
    else if (a === '--ttl') out.ttl = Number(next());
    else if (a.startsWith('--ttl=')) out.ttl = Number(a.slice(6));
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(out.port) || out.port <= 0 || out.port > 65535) {
    throw new Error('--port N is required (1..65535)');
  }
  if (!Number.isInteger(out.ttl) || out.ttl <= 0) throw new Error('--ttl must be a positive integer');
  return out;
}

const args = parseArgs(process.argv.slice(2));
const HOST = '127.0.0.1';
const ISSUER = `http://${HOST}:${args.port}`;
const TTL = args.ttl;
const REFRESH_TTL = 24 * 60 * 60;

// ---------- load oidc-provider ----------
async function loadProvider() {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    process.env.NODE_PEERS_DIR,
    path.resolve(here, '../../.tools/node-peers'),
    here,
  ].filter(Boolean);
  for (const dir of candidates) {
    try {
      const req = createRequire(path.join(dir, 'package.json'));
      const resolved = req.resolve('oidc-provider');
      return await import(resolved);
    } catch {
      // try next
    }
  }
  return import('oidc-provider');
}
const oidcModule = await loadProvider();
const Provider = oidcModule.default;
const { errors } = oidcModule;

// ---------- in-memory adapter ----------
// key `${model}:${id}` -> { payload, expiresAt (ms epoch or undefined) }
const store = new Map();
const uidIndex = new Map(); // uid -> key
const userCodeIndex = new Map(); // userCode -> key

function live(key) {
  const e = store.get(key);
  if (!e) return undefined;
  if (e.expiresAt !== undefined && e.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return e;
}

class MemoryAdapter {
  constructor(name) {
    this.name = name;
  }

  key(id) {
    return `${this.name}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    store.set(key, {
      payload: structuredClone(payload),
      expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined,
    });
    if (payload.uid) uidIndex.set(payload.uid, key);
    if (payload.userCode) userCodeIndex.set(payload.userCode, key);
  }

  async find(id) {
    const e = live(this.key(id));
    return e ? structuredClone(e.payload) : undefined;
  }

  async findByUid(uid) {
    const key = uidIndex.get(uid);
    if (!key) return undefined;
    const e = live(key);
    return e ? structuredClone(e.payload) : undefined;
  }

  async findByUserCode(userCode) {
    const key = userCodeIndex.get(userCode);
    if (!key) return undefined;
    const e = live(key);
    return e ? structuredClone(e.payload) : undefined;
  }

  async consume(id) {
    const e = live(this.key(id));
    if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, e] of store) {
      if (e.payload.grantId === grantId) store.delete(key);
    }
  }
}

function revokeRefreshTokens(account) {
  let n = 0;
  for (const [key, e] of store) {
    if (!key.startsWith('RefreshToken:')) continue;
    if (account !== undefined && e.payload.accountId !== account) continue;
    store.delete(key);
    n += 1;
  }
  return n;
}

// ---------- stats ----------
const stats = {
  authorization_code: 0,
  refresh_token: 0,
  client_credentials: 0,
  refresh_failures: 0,
};
// Successful refreshes per account (the login name).
let refreshByAccount = {};
function resetStats() {
  for (const k of Object.keys(stats)) stats[k] = 0;
  refreshByAccount = {};
}

// ---------- provider configuration ----------
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-peer-rs256', use: 'sig', alg: 'RS256' };

const RESOURCE_SCOPE = 'mcp';

function isLoopbackHttpUri(uri) {
  try {
    const u = new URL(uri);
    return (u.protocol === 'http:' || u.protocol === 'https:')
      && (u.hostname === '127.0.0.1' || u.hostname === 'localhost' || u.hostname === '[::1]');
  } catch {
    return false;
  }
}

const configuration = {
  adapter: MemoryAdapter,
  clients: [
    {
      // Resource server: only introspects.
      client_id: 'rs',
      client_secret: 'rs-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'cc-basic',
      client_secret: 'cc-basic-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'cc-post',
      client_secret: 'cc-post-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  clientDefaults: {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
    token_endpoint_auth_method: 'client_secret_basic',
  },
  clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post'],
  // Runs for every client (static and registered). Forces the refresh_token grant onto
  // every client that can do authorization_code, and limits redirect URIs to loopback.
  extraClientMetadata: {
    properties: ['x_test_peer'],
    validator(ctx, key, value, metadata) {
      if (key !== 'x_test_peer') return;
      const responseTypes = Array.isArray(metadata.response_types) ? metadata.response_types : ['code'];
      const grantTypes = Array.isArray(metadata.grant_types) ? [...metadata.grant_types] : ['authorization_code'];
      const doesCode = grantTypes.includes('authorization_code')
        || responseTypes.some((rt) => String(rt).split(' ').includes('code'));
      if (doesCode && !grantTypes.includes('refresh_token')) {
        grantTypes.push('refresh_token');
      }
      metadata.grant_types = grantTypes;
      for (const uri of metadata.redirect_uris || []) {
        if (!isLoopbackHttpUri(uri)) {
          throw new errors.InvalidClientMetadata(
            'redirect_uris must be http(s)://127.0.0.1:*, http(s)://localhost:* or [::1]',
          );
        }
      }
    },
  },
  // `mcp` is listed here too so that DCR requests carrying `"scope": "mcp"` are accepted
  // (oidc-provider validates registered scope values against this list); for access
  // tokens it is the resource-server scope from getResourceServerInfo that matters.
  scopes: ['openid', 'offline_access', RESOURCE_SCOPE],
  responseTypes: ['code'],
  jwks: { keys: [signingJwk] },
  claims: { openid: ['sub'] },
  pkce: {
    required: () => true,
  },
  features: {
    devInteractions: { enabled: true },
    registration: {
      enabled: true,
      initialAccessToken: false,
      issueRegistrationAccessToken: true,
    },
    revocation: {
      enabled: true,
      // Let the introspecting RS client revoke too; otherwise only the owning client may.
      allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId || client.clientId === 'rs',
    },
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => {
        if (client.clientId === 'rs') return true;
        return token.clientId === client.clientId;
      },
    },
    clientCredentials: { enabled: true },
    userinfo: { enabled: true },
    rpInitiatedLogout: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // No resource requested -> no default (token would only be good for userinfo).
      defaultResource: async (ctx, client, oneOf) => oneOf,
      // At the token endpoint (code exchange and refresh), if the client omits `resource`,
      // use the resource it was granted at the authorization endpoint.
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        let u;
        try {
          u = new URL(resourceIndicator);
        } catch {
          throw new errors.InvalidTarget('resource must be an absolute URL');
        }
        if (u.hash) throw new errors.InvalidTarget('resource must not contain a fragment');
        return {
          scope: RESOURCE_SCOPE,
          audience: resourceIndicator,
          accessTokenTTL: TTL,
          accessTokenFormat: 'opaque',
        };
      },
    },
  },
  // Always issue a refresh token (no offline_access needed) to clients allowed the grant;
  // the validator above allows it to every client that does authorization_code.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // Client-credentials tokens have no end-user; give them sub = client_id (RFC 9068 §2.2)
  // so that introspection (and the RS's whoami) reports a subject for them too.
  extraTokenClaims: async (ctx, token) => (token.kind === 'ClientCredentials' ? { sub: token.clientId } : undefined),
  rotateRefreshToken: () => true,
  expiresWithSession: async () => false,
  ttl: {
    AccessToken: TTL,
    ClientCredentials: TTL,
    AuthorizationCode: 60,
    RefreshToken: REFRESH_TTL,
    IdToken: 3600,
    Interaction: 3600,
    Session: 24 * 3600,
    Grant: 24 * 3600,
  },
  cookies: {
    keys: ['oauth-as-test-peer-cookie-key'],
  },
  // Any login name is the account id.
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub }),
  }),
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><title>oops</title></head><body><h1>oops! something went wrong</h1><pre id="error">${
      Object.entries(out).map(([k, v]) => `${k}: ${String(v).replace(/[<>&]/g, '')}`).join('\n')
    }</pre></body></html>`;
  },
};

const provider = new Provider(ISSUER, configuration);

provider.on('grant.success', (ctx) => {
  const gt = ctx.oidc?.params?.grant_type;
  if (gt && Object.hasOwn(stats, gt)) stats[gt] += 1;
  if (gt === 'refresh_token') {
    const account = ctx.oidc?.entities?.RefreshToken?.accountId ?? ctx.oidc?.entities?.Account?.accountId ?? '?';
    refreshByAccount[account] = (refreshByAccount[account] ?? 0) + 1;
  }
});
provider.on('grant.error', (ctx, err) => {
  const gt = ctx.oidc?.params?.grant_type ?? ctx.request?.body?.grant_type;
  if (gt === 'refresh_token') stats.refresh_failures += 1;
  if (process.env.OAUTH_AS_DEBUG) console.error('grant.error', gt, err?.error, err?.error_description);
});
if (process.env.OAUTH_AS_DEBUG) {
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
}

// The built-in devInteractions pages @import a web font from the internet; strip any such
// external reference so a headless browser driving them stays on loopback.
provider.use(async (ctx, next) => {
  await next();
  if (typeof ctx.body === 'string' && ctx.body.includes('@import url(')) {
    ctx.body = ctx.body.replace(/@import url\([^)]*\);?/g, '');
  }
});

// ---------- HTTP wrapper ----------
const providerHandler = provider.callback();

function sendJson(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(data),
    'cache-control': 'no-store',
  });
  res.end(data);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, ISSUER);
  if (url.pathname.startsWith('/test/')) {
    req.resume();
    if (url.pathname === '/test/stats' && req.method === 'GET') {
      return sendJson(res, 200, { ...stats, refresh_by_account: { ...refreshByAccount } });
    }
    if (url.pathname === '/test/reset' && req.method === 'POST') {
      resetStats();
      return sendJson(res, 200, { ...stats, refresh_by_account: { ...refreshByAccount } });
    }
    if (url.pathname === '/test/revoke-refresh' && req.method === 'POST') {
      const account = url.searchParams.get('account') ?? undefined;
      const revoked = revokeRefreshTokens(account);
      return sendJson(res, 200, { revoked });
    }
    return sendJson(res, 404, { error: 'not_found' });
  }
  if (url.pathname === '/.well-known/oauth-authorization-server') {
    req.url = `/.well-known/openid-configuration${url.search}`;
  }
  return providerHandler(req, res);
});

server.listen(args.port, HOST, () => {
  process.stdout.write('READY\n');
});

const shutdown = () => {
  server.close();
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
