//! The OpenAPI 3.1 document. Every JSON route is registered through
//! `utoipa_axum::routes!`, which adds it to the router and to this document in one step, so
//! the two cannot drift (a test also checks that no route bypasses it).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "AuthMCP Gateway API",
        description = "Admin, account and discovery API of AuthMCP Gateway, the secure front door for MCP servers. Errors are always `{\"error\": {\"code\", \"message\"}}`; see docs/API.md.",
        license(name = "MIT", identifier = "MIT"),
    ),
    modifiers(&SecuritySchemes),
    paths(
        crate::mcp::proxy::doc_post,
        crate::mcp::proxy::doc_get,
        crate::mcp::proxy::doc_delete,
        crate::mcp::aggregate::doc_post,
        crate::mcp::aggregate::doc_get,
        crate::mcp::aggregate::doc_delete,
        crate::live::doc_socket,
    ),
    tags(
        (name = "health", description = "Liveness and readiness probes"),
        (name = "setup", description = "First-run setup"),
        (name = "auth", description = "Sign-in, tokens, sessions and keys for MCP clients and users"),
        (name = "api-keys", description = "API keys (`amg_…`) for MCP clients and scripts"),
        (name = "admin", description = "Admin sessions, audit log, security events, signing keys"),
        (name = "users", description = "User administration"),
        (name = "teams", description = "Teams: who owns which servers, and who administers them (team admins see and manage only their teams')"),
        (name = "portal", description = "The user portal: my servers, API keys, approved applications, password and activity (portal-audience sessions)"),
        (name = "mcp-servers", description = "MCP servers registry, per-user access, activity"),
        (name = "mcp", description = "The MCP endpoints (streamable HTTP, JSON-RPC bodies)"),
        (name = "audit", description = "The MCP security scanner: scans as background jobs, reports, export (docs/SECURITY_TESTING.md)"),
        (name = "oauth", description = "OAuth 2.1 for MCP clients: metadata, registration, consent; `/oauth/authorize`, `/oauth/token` and `/oauth/revoke` are OAuth's own formats (docs/API.md); clients and grants for admins"),
    ),
    components(schemas(shared::error::ApiErrorBody, shared::error::ApiErrorDetail)),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or amg_ API key")
                    .build(),
            ),
        );
    }
}
