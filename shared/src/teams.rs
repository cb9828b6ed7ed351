//! Teams: a team owns MCP servers and has members, each a `member` or a `team_admin`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Team {
    pub id: i64,
    pub name: String,
    pub members: i64,
    pub servers: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TeamName {
    /// 1 to 100 characters, unique.
    // Trimmed, then a display name (`accounts::validate_display_name`).
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::team_name))]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamMember {
    pub user_id: i64,
    pub username: String,
    /// `member` or `team_admin`.
    pub role: String,
    pub added_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetTeamMember {
    /// `member` or `team_admin`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::team_role))]
    pub role: String,
}
