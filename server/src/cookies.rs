//! Cookies the gateway sets and reads (the admin UI's refresh cookie, the consent page's
//! sign-in, the backend-connection flow): one reader, one writer.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::error::ApiError;

/// The value of cookie `name` in the request, if present and not empty.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, `Secure` when the gateway is served over https; a
/// `max_age` of 0 clears the cookie.
pub fn set(
    public_url: &str,
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    max_age: u64,
) -> Result<HeaderValue, ApiError> {
    let secure = if public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}"
    ))
    .map_err(|e| ApiError::Internal(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_cookie_only() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; bb=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=; b=3"));
        assert_eq!(read(&h, "b").as_deref(), Some("3"));
        assert_eq!(read(&h, "bb").as_deref(), Some("2"));
        assert_eq!(read(&h, "c"), None);
        assert_eq!(read(&h, "x"), None);
    }
}
