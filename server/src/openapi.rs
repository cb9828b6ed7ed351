//! The OpenAPI 3.1 document. Every JSON route is registered through
//! `utoipa_axum::routes!`, which adds it to the router and to this document in one step, so
//! the two cannot drift (a test also checks that no route bypasses it).

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
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
        crate::oauth::flow::doc_authorize,
        crate::oauth::flow::doc_token,
        crate::oauth::flow::doc_revoke,
        crate::metrics::doc_metrics,
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
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`METRICS_TOKEN`"))
                    .build(),
            ),
        );
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

/// Adds to every operation the answers its extractors give, where the operation does not
/// document them itself, so that the document lists every status code an operation returns:
/// - a JSON body: `400` (`invalid_json`, `invalid_body`, `validation_failed`), `413` (over
///   `MAX_BODY_BYTES`), `415` (not `application/json`);
/// - path or query parameters: `400` (`invalid_path`, `invalid_query`, `validation_failed`);
/// - a bearer: `401`; on the admin API also `403` (a signed-in user who may not do this).
///
/// The MCP endpoints answer JSON-RPC errors and document theirs by hand.
pub fn complete(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if path.starts_with("/mcp") {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            complete_operation(path, operation);
        }
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiErrorBody")))
                    .build(),
            )
            .build(),
    )
}

fn complete_operation(path: &str, operation: &mut Operation) {
    let json_body = matches!(&operation.request_body, Some(RefOr::T(body)) if body.content.contains_key("application/json"));
    let parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let secured = operation.security.as_ref().is_some_and(|requirements| {
        !requirements.is_empty()
            && requirements
                .iter()
                .all(|r| r != &utoipa::openapi::security::SecurityRequirement::default())
    });
    let responses = &mut operation.responses.responses;
    let mut add = |code: &str, description: &str| {
        responses
            .entry(code.to_string())
            .or_insert_with(|| error_response(description));
    };
    if json_body {
        add(
            "400",
            "`invalid_json`, `invalid_body` or `validation_failed`: the body is not JSON, does not match the schema, or breaks a rule stated in it",
        );
        add(
            "413",
            "`payload_too_large`: the body is over `MAX_BODY_BYTES`",
        );
        add(
            "415",
            "`unsupported_media_type`: the body is not sent as `application/json`",
        );
    }
    if parameters {
        add(
            "400",
            "`invalid_path`, `invalid_query` or `validation_failed`: a parameter does not match its schema",
        );
    }
    if secured {
        add(
            "401",
            "`unauthorized`: no valid bearer token of this API's audience",
        );
        if path.starts_with("/admin/api") {
            add(
                "403",
                "`forbidden`: the signed-in admin may not do this (a team admin, for what only global admins may do)",
            );
        }
    }
}

/// A string that is one of `values` (for `schema_with` on query parameters whose Rust type is a
/// string).
pub fn one_of(values: &[&str]) -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values.iter().map(|v| v.to_string())))
        .build()
}
