//! The error envelope every JSON endpoint returns on failure.

use serde::{Deserialize, Serialize};

/// The body of every non-2xx JSON response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"error": {"code": "not_found", "message": "no route for this path"}})))]
pub struct ApiErrorBody {
    pub error: ApiErrorDetail,
}

/// A stable, machine-readable `code` plus a human-readable `message`.
///
/// Clients branch on `code`; `message` may change between releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiErrorDetail {
    /// One of the codes listed in docs/API.md, e.g. `validation_failed`, `unauthorized`.
    pub code: String,
    pub message: String,
    /// Extra structured detail, e.g. the offending field of a validation error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ApiErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ApiErrorDetail {
                code: code.into(),
                message: message.into(),
                details: None,
            },
        }
    }
}
