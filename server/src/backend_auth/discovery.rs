//! Finding a backend's authorization server and registering the gateway with it: the
//! protected-resource metadata (RFC 9728, from the `WWW-Authenticate` of the backend's 401 or
//! its well-known URL), the authorization server's metadata (RFC 8414, then OpenID discovery),
//! and dynamic client registration (RFC 7591). Every request goes through `fetch.rs` under the
//! server's policy.

use serde::Deserialize;
use serde_json::json;

use crate::backend_auth::{ClientAuth, OAuthConfig, ServerAuth};
use crate::fetch::{self, FetchError};

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Found {
    pub issuer: String,
    pub authorization_url: String,
    pub token_url: String,
    pub registration_url: Option<String>,
    /// The resource identifier to ask tokens for (the metadata's `resource`).
    pub resource: String,
    /// Scopes to ask for when the admin set none: the metadata's `scopes_supported`.
    pub scopes: Option<String>,
    pub auth_methods: Vec<String>,
    /// The server accepts client ID metadata documents as client ids.
    pub client_metadata_documents: bool,
}

#[derive(Deserialize)]
struct ResourceMetadata {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

#[derive(Deserialize)]
struct ServerMetadata {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    #[serde(default)]
    registration_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    client_id_metadata_document_supported: bool,
}

fn err(e: FetchError) -> String {
    e.0
}

/// The `resource_metadata` parameter of a `WWW-Authenticate: Bearer` challenge.
pub fn resource_metadata_param(header: &str) -> Option<String> {
    let lower = header.to_ascii_lowercase();
    let at = lower.find("resource_metadata=")?;
    let rest = &header[at + "resource_metadata=".len()..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        &quoted[..quoted.find('"')?]
    } else {
        rest.split([',', ' ']).next()?
    };
    (!value.is_empty()).then(|| value.to_string())
}

/// An absolute `https` URL (or `http` when allowed) without credentials or fragment.
pub fn web_url(raw: &str, allow_http: bool) -> bool {
    raw.len() <= 2000
        && url::Url::parse(raw).is_ok_and(|u| {
            (u.scheme() == "https" || (allow_http && u.scheme() == "http"))
                && u.host_str().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && u.fragment().is_none()
        })
}

/// Well-known URL of a metadata document for an identifier with a path (RFC 8414 §3.1 and
/// RFC 9728 §3.1: the well-known segment goes between the host and the path).
fn well_known(id: &url::Url, suffix: &str) -> String {
    let path = id.path().trim_end_matches('/');
    format!(
        "{}/.well-known/{suffix}{path}",
        id.origin().ascii_serialization()
    )
}

fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

async fn get_json<T: serde::de::DeserializeOwned>(
    policy: &fetch::Policy,
    url: &str,
) -> Result<Option<T>, String> {
    let res = fetch::send(policy, reqwest::Method::GET, url, |r| {
        r.header(reqwest::header::ACCEPT, "application/json")
    })
    .await
    .map_err(err)?;
    if res.status == 404 {
        return Ok(None);
    }
    if !(200..300).contains(&res.status) {
        return Err(format!(
            "{} answered HTTP {}",
            fetch::host_of(&res.url),
            res.status
        ));
    }
    res.json().map(Some).map_err(err)
}

/// Finds the authorization server of a backend.
pub async fn discover(auth: &ServerAuth) -> Result<Found, String> {
    find(&auth.policy().await, &auth.url).await
}

/// Finds and checks the authorization server of the MCP server at `url` (also the security
/// scanner's check of a server's metadata): every failure is a sentence naming what is wrong.
pub async fn find(policy: &fetch::Policy, url: &str) -> Result<Found, String> {
    let policy = *policy;
    let server_url = url::Url::parse(url).map_err(|_| "the server URL is not valid".to_string())?;
    // The backend's own challenge names its metadata.
    let probe = fetch::send(&policy, reqwest::Method::POST, url, |r| {
        r.header(
            reqwest::header::ACCEPT,
            "application/json, text/event-stream",
        )
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": { "protocolVersion": crate::mcp::protocol::LATEST_HANDSHAKE_VERSION,
                        "capabilities": {}, "clientInfo": crate::mcp::backend::client_info() },
        }))
    })
    .await
    .map_err(err)?;
    let mut candidates = Vec::new();
    if let Some(url) = probe
        .headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(resource_metadata_param)
    {
        candidates.push(
            server_url
                .join(&url)
                .map_err(|_| "the backend's resource_metadata is not a URL".to_string())?
                .to_string(),
        );
    }
    candidates.push(well_known(&server_url, "oauth-protected-resource"));
    candidates.push(format!(
        "{}/.well-known/oauth-protected-resource",
        server_url.origin().ascii_serialization()
    ));
    candidates.dedup();
    let mut prm = None;
    for candidate in &candidates {
        if let Some(found) = get_json::<ResourceMetadata>(&policy, candidate).await? {
            prm = Some(found);
            break;
        }
    }
    let prm = prm.ok_or_else(|| {
        "the backend publishes no protected-resource metadata (RFC 9728)".to_string()
    })?;
    if !same_resource(&prm.resource, url) {
        return Err(format!(
            "the backend's metadata names another resource ({}) than its URL",
            prm.resource
        ));
    }
    let issuer = prm
        .authorization_servers
        .first()
        .ok_or_else(|| "the backend's metadata names no authorization server".to_string())?
        .clone();
    let issuer_url = url::Url::parse(&issuer)
        .map_err(|_| "the authorization server is not a URL".to_string())?;
    let mut documents = vec![
        well_known(&issuer_url, "oauth-authorization-server"),
        well_known(&issuer_url, "openid-configuration"),
    ];
    if issuer_url.path().len() > 1 {
        documents.push(format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ));
    }
    let mut metadata = None;
    for doc in &documents {
        if let Some(found) = get_json::<ServerMetadata>(&policy, doc).await? {
            metadata = Some(found);
            break;
        }
    }
    let metadata = metadata
        .ok_or_else(|| "the authorization server publishes no metadata (RFC 8414)".to_string())?;
    if !same_resource(&metadata.issuer, &issuer) {
        return Err("the authorization server's metadata names another issuer".into());
    }
    if !metadata
        .code_challenge_methods_supported
        .iter()
        .any(|m| m == "S256")
    {
        return Err("the authorization server does not advertise PKCE with S256".into());
    }
    let (Some(authorization_url), Some(token_url)) =
        (metadata.authorization_endpoint, metadata.token_endpoint)
    else {
        return Err("the authorization server's metadata lacks its endpoints".into());
    };
    // Where browsers are sent and secrets go: web URLs only (an endpoint such as
    // `javascript:…` would run in the gateway's pages), https unless the policy allows http.
    for endpoint in [
        Some(&authorization_url),
        Some(&token_url),
        metadata.registration_endpoint.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if !web_url(endpoint, policy.allow_http) {
            return Err(format!(
                "the authorization server's metadata names an endpoint that is not an https URL ({})",
                endpoint.chars().take(100).collect::<String>()
            ));
        }
    }
    Ok(Found {
        issuer: metadata.issuer,
        authorization_url,
        token_url,
        registration_url: metadata.registration_endpoint,
        resource: prm.resource,
        scopes: (!prm.scopes_supported.is_empty()).then(|| prm.scopes_supported.join(" ")),
        auth_methods: metadata.token_endpoint_auth_methods_supported,
        client_metadata_documents: metadata.client_id_metadata_document_supported,
    })
}

#[derive(Deserialize)]
struct Registered {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

/// Registers the gateway as a client (RFC 7591) and returns the configuration to keep.
pub async fn register(
    auth: &ServerAuth,
    found: &Found,
    redirect_uri: &str,
    scope: Option<&str>,
) -> Result<OAuthConfig, String> {
    let Some(endpoint) = &found.registration_url else {
        return Err(
            "the authorization server offers no dynamic registration; register a client there \
             and enter its client id"
                .into(),
        );
    };
    // A confidential client when the server takes one: the secret never leaves the gateway.
    let method = if found.auth_methods.is_empty()
        || found
            .auth_methods
            .iter()
            .any(|m| m == "client_secret_basic")
    {
        "client_secret_basic"
    } else if found.auth_methods.iter().any(|m| m == "client_secret_post") {
        "client_secret_post"
    } else {
        "none"
    };
    let mut body = json!({
        "client_name": "AuthMCP Gateway",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    let policy = auth.policy().await;
    let res = fetch::send(&policy, reqwest::Method::POST, endpoint, |r| {
        r.header(reqwest::header::ACCEPT, "application/json")
            .json(&body)
    })
    .await
    .map_err(err)?;
    if !(200..300).contains(&res.status) {
        let detail = serde_json::from_slice::<serde_json::Value>(&res.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| format!("HTTP {}", res.status));
        return Err(format!(
            "registering with the authorization server failed: {detail}"
        ));
    }
    let registered: Registered = res.json().map_err(err)?;
    let auth_method = registered
        .token_endpoint_auth_method
        .as_deref()
        .and_then(ClientAuth::parse)
        .unwrap_or(if registered.client_secret.is_some() {
            ClientAuth::ClientSecretBasic
        } else {
            ClientAuth::None
        });
    Ok(OAuthConfig {
        client_id: Some(registered.client_id),
        client_secret: registered.client_secret,
        auth_method,
        registered_redirect_uri: Some(redirect_uri.to_string()),
        ..OAuthConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters() {
        assert_eq!(
            resource_metadata_param(
                r#"Bearer error="invalid_token", resource_metadata="https://a/.well-known/oauth-protected-resource/mcp""#
            )
            .as_deref(),
            Some("https://a/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            resource_metadata_param("Bearer resource_metadata=https://a/x, scope=mcp").as_deref(),
            Some("https://a/x")
        );
        assert_eq!(resource_metadata_param("Bearer realm=\"x\""), None);
        assert_eq!(
            resource_metadata_param("Bearer resource_metadata=\"\""),
            None
        );
        assert_eq!(
            resource_metadata_param("Bearer resource_metadata=\"unterminated"),
            None
        );
    }

    #[test]
    fn only_web_urls_are_endpoints() {
        assert!(web_url("https://as.example/authorize", false));
        assert!(web_url("http://127.0.0.1:9/authorize", true));
        for bad in [
            "javascript:alert(1)//",
            "JAVASCRIPT:alert(1)",
            "data:text/html,<script>",
            "http://as.example/authorize",
            "https://user:pw@as.example/authorize",
            "https://as.example/authorize#frag",
            "//as.example/authorize",
            "vbscript:x",
        ] {
            assert!(!web_url(bad, false), "{bad}");
        }
        assert!(!web_url("javascript:alert(1)//", true));
    }

    #[test]
    fn well_known_urls_insert_the_segment_before_the_path() {
        let u = url::Url::parse("https://as.example/tenant1/").unwrap();
        assert_eq!(
            well_known(&u, "oauth-authorization-server"),
            "https://as.example/.well-known/oauth-authorization-server/tenant1"
        );
        let u = url::Url::parse("https://as.example").unwrap();
        assert_eq!(
            well_known(&u, "openid-configuration"),
            "https://as.example/.well-known/openid-configuration"
        );
    }
}
