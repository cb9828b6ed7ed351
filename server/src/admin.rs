//! The admin API under `/admin/api`: admin sessions, users, audit log and security events.
//! Every handler takes `AdminUser`, so only an enabled admin with an admin-audience token gets
//! in (API keys never do).

mod audits;
mod console;
mod limits;
mod logs;
mod oauth;
mod pins;
mod servers;
mod session;
mod stats;
mod teams;
mod tool_rules;
mod users;

use serde::Deserialize;
use utoipa::IntoParams;

use crate::accounts::Actor;
use crate::auth::identity::{Principal, RequestMeta};
use crate::error::ApiError;
use crate::openapi::router::ApiRouter;

/// The `settings` key of the rate-limit defaults.
pub const RATE_LIMITS_SETTING: &str = limits::SETTING_KEY;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .merge(session::router())
        .merge(audits::router())
        .merge(users::router())
        .merge(logs::router())
        .merge(servers::router())
        .merge(tool_rules::router())
        .merge(pins::router())
        .merge(oauth::router())
        .merge(limits::router())
        .merge(console::router())
        .merge(stats::router())
        .merge(teams::router())
        .routes(crate::routes!(crate::live::ticket))
}

/// The actor of an admin change (for the audit log).
pub(crate) fn actor<'a>(admin: &'a impl AsRef<Principal>, meta: &RequestMeta) -> Actor<'a> {
    Actor::of(admin.as_ref(), meta)
}

/// `?page=1&per_page=50` (per_page at most 200).
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1, at most 1,000,000).
    #[param(minimum = 1, maximum = 1_000_000)]
    pub page: Option<u32>,
    /// Items per page (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    pub per_page: Option<u32>,
}

/// Most items one page may hold.
pub const MAX_PER_PAGE: u32 = 200;

/// The last page number a list answers (200 million items in).
pub const MAX_PAGE: u32 = 1_000_000;

impl PageQuery {
    /// The paging asked for, refused (400) when out of range rather than silently changed.
    pub fn checked(page: Option<u32>, per_page: Option<u32>) -> Result<PageQuery, ApiError> {
        if page.is_some_and(|n| n == 0 || n > MAX_PAGE) {
            return Err(ApiError::validation(
                "page",
                format!("page is 1 to {MAX_PAGE}"),
            ));
        }
        if per_page.is_some_and(|n| n == 0 || n > MAX_PER_PAGE) {
            return Err(ApiError::validation(
                "per_page",
                format!("per_page is 1 to {MAX_PER_PAGE}"),
            ));
        }
        Ok(PageQuery { page, per_page })
    }

    pub fn page(&self) -> u32 {
        self.page.unwrap_or(1).max(1)
    }

    pub fn per_page(&self) -> u32 {
        self.per_page.unwrap_or(50).clamp(1, MAX_PER_PAGE)
    }

    pub fn limit_offset(&self) -> (i64, i64) {
        let per_page = i64::from(self.per_page());
        (per_page, (i64::from(self.page()) - 1) * per_page)
    }
}
