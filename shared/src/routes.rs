//! Path constants used by the server's router, the SPA's API funnel and the tests.

pub const HEALTH: &str = "/health";
pub const READY: &str = "/ready";
pub const OPENAPI_JSON: &str = "/api-docs/openapi.json";
pub const SWAGGER_UI: &str = "/swagger-ui";
pub const JWKS: &str = "/.well-known/jwks.json";

/// Path prefixes that belong to the JSON/MCP API. A request under one of them that matches
/// no route gets a JSON 404, never the SPA's `index.html`.
pub const API_PREFIXES: &[&str] = &[
    "/admin/api",
    "/portal/api",
    "/api-docs",
    "/auth/",
    "/oauth/",
    "/mcp",
    "/.well-known/",
    "/setup/",
    "/health",
    "/ready",
    "/metrics",
    "/swagger-ui",
];

/// True when `path` is served by the API rather than the SPA.
pub fn is_api_path(path: &str) -> bool {
    API_PREFIXES.iter().any(|prefix| {
        // "/setup/" covers "/setup/status" but not the SPA page "/setup".
        (!prefix.ends_with('/') && path == *prefix)
            || path.starts_with(prefix)
                && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/'))
    })
}

#[cfg(test)]
mod tests {
    use super::is_api_path;

    #[test]
    fn api_and_spa_paths_are_told_apart() {
        for api in [
            "/admin/api",
            "/admin/api/users",
            "/portal/api/servers",
            "/auth/login",
            "/mcp",
            "/mcp/github",
            "/.well-known/jwks.json",
            "/setup/status",
            "/health",
            "/swagger-ui/index.html",
        ] {
            assert!(is_api_path(api), "{api} should be an API path");
        }
        for spa in [
            "/",
            "/admin",
            "/admin/users",
            "/login",
            "/setup",
            "/mcpfoo",
            "/account",
            "/account/api-keys",
            "/portal",
            "/healthz",
            "/auth",
        ] {
            assert!(!is_api_path(spa), "{spa} should be an SPA path");
        }
    }
}
