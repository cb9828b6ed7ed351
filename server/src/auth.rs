//! Authentication endpoints. For now: the JWKS that publishes the token-verification keys.

use axum::extract::State;
use shared::auth::Jwks;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::AppJson;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// The public keys that verify the gateway's JWTs (RFC 7517). During a key rotation both the
/// new key and the previous one are listed.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", operation_id = "jwks",
    responses((status = 200, description = "JSON Web Key Set", body = Jwks)))]
async fn jwks(State(state): State<AppState>) -> AppJson<Jwks> {
    AppJson(state.keys.jwks())
}
