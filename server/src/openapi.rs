//! The OpenAPI 3.1 document. Every JSON route is registered through `crate::routes!`
//! (`router.rs`), which routes it and keeps its documentation in one step, so the two cannot
//! drift (a test also checks that no route bypasses it); the document is built from that when
//! first requested.

pub mod router;

use utoipa::openapi::path::{Operation, Parameter, PathItem};
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
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
///
/// And it states the API's one rule for every string a request carries (`no_nul`).
pub fn complete(doc: &mut utoipa::openapi::OpenApi) {
    no_nul(doc);
    for (path, item) in doc.paths.paths.iter_mut() {
        if path.starts_with("/mcp") {
            continue;
        }
        for operation in operations(item) {
            complete_operation(path, operation);
        }
    }
}

/// The operations of a path the API serves (it has no other methods).
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// The pattern of a request string that has none: no NUL (`error::read_json`, `AppQuery`,
/// `AppPath` and the OAuth forms refuse it; Postgres text cannot hold it).
pub const NO_NUL: &str = "^[^\\u0000]*$";

/// Gives every string schema of a request (its parameters and bodies, and the components they
/// refer to) that has no pattern or enumeration the pattern `NO_NUL`.
fn no_nul(doc: &mut utoipa::openapi::OpenApi) {
    let mut refs = Vec::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        if path.starts_with("/mcp") {
            // JSON-RPC bodies, read by the MCP reading (a NUL in a tool argument is the
            // backend's business).
            continue;
        }
        patch_parameters(item.parameters.as_mut(), &mut refs);
        for operation in operations(item) {
            patch_parameters(operation.parameters.as_mut(), &mut refs);
            if let Some(RefOr::T(body)) = &mut operation.request_body {
                for media in body.content.values_mut() {
                    if let RefOr::T(Content {
                        schema: Some(schema),
                        ..
                    }) = media
                    {
                        patch(schema, &mut refs);
                    }
                }
            }
        }
    }
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let mut done = std::collections::HashSet::new();
    while let Some(name) = refs.pop() {
        if done.insert(name.clone())
            && let Some(schema) = components.schemas.get_mut(&name)
        {
            patch(schema, &mut refs);
        }
    }
}

fn patch_parameters(parameters: Option<&mut Vec<RefOr<Parameter>>>, refs: &mut Vec<String>) {
    for parameter in parameters.into_iter().flatten() {
        if let RefOr::T(Parameter {
            schema: Some(schema),
            ..
        }) = parameter
        {
            patch(schema, refs);
        }
    }
}

/// `NO_NUL` on the strings of one schema; the components it refers to go on `refs`.
fn patch(schema: &mut RefOr<Schema>, refs: &mut Vec<String>) {
    match schema {
        RefOr::Ref(r) => {
            if let Some(name) = r.ref_location.strip_prefix("#/components/schemas/") {
                refs.push(name.to_string());
            }
        }
        RefOr::T(schema) => patch_schema(schema, refs),
    }
}

fn patch_schema(schema: &mut Schema, refs: &mut Vec<String>) {
    match schema {
        Schema::Object(object) => {
            let is_string = match &object.schema_type {
                SchemaType::Type(t) => *t == Type::String,
                SchemaType::Array(types) => types.contains(&Type::String),
                SchemaType::AnyValue => false,
            };
            if is_string && object.pattern.is_none() && object.enum_values.is_none() {
                object.pattern = Some(NO_NUL.into());
            }
            for property in object.properties.values_mut() {
                patch(property, refs);
            }
            if let Some(more) = object.additional_properties.as_deref_mut()
                && let AdditionalProperties::RefOr(more) = more
            {
                patch(more, refs);
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                patch(items, refs);
            }
            for item in &mut array.prefix_items {
                patch_schema(item, refs);
            }
        }
        Schema::OneOf(one) => one.items.iter_mut().for_each(|s| patch(s, refs)),
        Schema::AllOf(all) => all.items.iter_mut().for_each(|s| patch(s, refs)),
        Schema::AnyOf(any) => any.items.iter_mut().for_each(|s| patch(s, refs)),
        _ => {}
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every string a request (outside `/mcp`) carries has a pattern, enumeration or constant,
    /// and the patterns `no_nul` adds are exactly `NO_NUL`.
    #[test]
    fn every_request_string_states_the_nul_rule() {
        let (_, doc) = crate::app::api_parts();
        let json = serde_json::to_value(&doc).unwrap();
        let mut strings = 0;
        let mut added = 0;
        let mut check = |schema: &Value, at: &str| {
            let Some(object) = schema.as_object() else {
                return;
            };
            let is_string = object.get("type") == Some(&Value::from("string"))
                || object
                    .get("type")
                    .and_then(Value::as_array)
                    .is_some_and(|t| t.contains(&Value::from("string")));
            if is_string {
                strings += 1;
                assert!(
                    ["pattern", "enum", "const"]
                        .iter()
                        .any(|k| object.contains_key(*k)),
                    "{at}: {schema}"
                );
                added += usize::from(object.get("pattern") == Some(&Value::from(super::NO_NUL)));
            }
        };
        fn walk(v: &Value, at: &str, f: &mut dyn FnMut(&Value, &str)) {
            f(v, at);
            match v {
                Value::Object(o) => {
                    for (k, child) in o {
                        if !["example", "examples", "default", "enum"].contains(&k.as_str()) {
                            walk(child, &format!("{at}/{k}"), f);
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|c| walk(c, at, f)),
                _ => {}
            }
        }
        for (path, item) in json["paths"].as_object().unwrap() {
            if path.starts_with("/mcp") {
                continue;
            }
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    walk(
                        &p["schema"],
                        &format!("{method} {path} parameter"),
                        &mut check,
                    );
                }
                walk(
                    &op["requestBody"],
                    &format!("{method} {path} body"),
                    &mut check,
                );
            }
        }
        // The bodies' components (those named in a request body of the document).
        let requested: Vec<String> = json["paths"]
            .to_string()
            .split("#/components/schemas/")
            .skip(1)
            .map(|r| r.split('"').next().unwrap().to_string())
            .collect();
        for (name, schema) in json["components"]["schemas"].as_object().unwrap() {
            let request = (name.starts_with("Create") && !name.starts_with("Created"))
                || name.starts_with("Update")
                || name == "LoginRequest";
            if request {
                assert!(requested.contains(name), "{name}");
                walk(schema, name, &mut check);
            }
        }
        assert!(
            strings > 50 && added > 10,
            "{strings} strings, {added} patterns added"
        );
    }
}
