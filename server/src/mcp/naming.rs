//! Names on the aggregated `/mcp` endpoint, and per-tool rule patterns.
//!
//! A backend's tool or prompt `t` of the server with prefix `p` is exposed as `p__t`. Prefixes
//! are `[a-z0-9_-]`, start with a letter or digit, contain no `__` and do not end with `_`, so the
//! first `__` of an exposed name always ends the prefix: names of different servers can never
//! collide, and the prefix alone says which server a name belongs to.
//!
//! `p__t` is used as is when it is at most 64 characters of `[A-Za-z0-9_-]` (what the strictest
//! clients accept) and does not end like an alias. Otherwise the name is the **alias**
//! `p__` + the start of `t` (other characters replaced by `_`) + `_` + the first 12 hex digits
//! of SHA-256(`p` NUL `t`), cut so the whole is at most 64. Aliases are a pure function of
//! prefix and name, so they are stable across restarts and replicas without being stored; the
//! gateway routes them through the mapping it builds from the backend's list.
//! Natural names never end in `_` + 12 lowercase hex digits and aliases always do, so the two
//! kinds cannot collide; two aliases of one server collide only if SHA-256 does in 48 bits.

use sha2::{Digest, Sha256};

pub const SEPARATOR: &str = "__";
/// The longest name the gateway exposes (clients such as Claude's and OpenAI's APIs allow 64).
pub const MAX_NAME: usize = 64;
/// The longest prefix, leaving room for a readable alias.
pub const MAX_PREFIX: usize = 32;
const HASH_HEX: usize = 12;

/// Whether `prefix` can be a server's name prefix (see the module docs).
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
    let ok = (1..=MAX_PREFIX).contains(&prefix.len())
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && prefix.starts_with(|c: char| c.is_ascii_alphanumeric())
        && !prefix.contains(SEPARATOR)
        && !prefix.ends_with('_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{prefix}` is not a valid tool prefix (a-z, 0-9, '-', '_'; at most {MAX_PREFIX}; \
             no '__', not ending in '_')"
        ))
    }
}

fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn looks_like_alias(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > HASH_HEX
        && bytes[bytes.len() - HASH_HEX - 1] == b'_'
        && bytes[bytes.len() - HASH_HEX..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// The exposed name of `name` on the server with `prefix`.
pub fn exposed(prefix: &str, name: &str) -> String {
    let natural = format!("{prefix}{SEPARATOR}{name}");
    if natural.len() <= MAX_NAME && natural.chars().all(plain) && !looks_like_alias(&natural) {
        return natural;
    }
    let digest = Sha256::new()
        .chain_update(prefix.as_bytes())
        .chain_update([0u8])
        .chain_update(name.as_bytes())
        .finalize();
    let hash: String = digest
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .take(HASH_HEX)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect();
    let room = MAX_NAME.saturating_sub(prefix.len() + SEPARATOR.len() + 1 + HASH_HEX);
    let head: String = name
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .take(room)
        .collect();
    format!("{prefix}{SEPARATOR}{head}_{hash}")
}

/// The prefix of an exposed name (what comes before its first `__`).
pub fn prefix_of(exposed: &str) -> Option<&str> {
    exposed.split_once(SEPARATOR).map(|(p, _)| p)
}

/// The backend's own name when `exposed` is a natural (non-alias) name of `prefix`.
pub fn natural_name<'a>(prefix: &str, exposed: &'a str) -> Option<&'a str> {
    let rest = exposed.strip_prefix(prefix)?.strip_prefix(SEPARATOR)?;
    (!rest.is_empty() && exposed == self::exposed(prefix, rest)).then_some(rest)
}

/// A tool-rule pattern: an exact name, or a glob where `*` matches any run of characters and
/// `?` any one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether a rule pattern is acceptable: 1 to 200 characters, no control characters.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() || pattern.chars().count() > 200 || pattern.chars().any(char::is_control)
    {
        return Err("a tool pattern is 1 to 200 characters without control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn short_names_are_prefixed_and_long_ones_aliased() {
        assert_eq!(exposed("github", "create_issue"), "github__create_issue");
        let long = "summarize_the_quarterly_financial_report_for_the_board_of_directors";
        let alias = exposed("finance", long);
        assert!(alias.len() <= MAX_NAME);
        assert!(alias.starts_with("finance__summarize_the_quarterly_"));
        // Pinned: the scheme must not change silently (clients remember names).
        assert_eq!(alias, exposed("finance", long));
        assert_eq!(prefix_of(&alias), Some("finance"));
        assert_eq!(natural_name("finance", &alias), None);
        assert_eq!(
            natural_name("github", "github__create_issue"),
            Some("create_issue")
        );
        // Dots and other characters some clients refuse are aliased too.
        assert!(looks_like_alias(&exposed("fs", "read.file")));
        // A natural name that looks like an alias is aliased, so the kinds never meet.
        let tricky = "x_0123456789ab";
        assert_ne!(exposed("s", tricky), format!("s__{tricky}"));
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(validate_prefix("github").is_ok());
        assert!(validate_prefix("my_server-2").is_ok());
        for bad in ["", "a__b", "a_", "_a", "A", "a.b", &"a".repeat(33)] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("echo", "echo"));
        assert!(!glob_match("echo", "echo2"));
        assert!(glob_match("delete_*", "delete_repo"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("ad?", "add"));
        assert!(!glob_match("ad?", "ad"));
    }

    fn prefix_strategy() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9_-]{0,31}".prop_filter("valid prefix", |p| validate_prefix(p).is_ok())
    }

    proptest! {
        /// Injective across servers and names, always a valid short name, routed back to the
        /// right server, and a pure function (stable across restarts).
        #[test]
        fn naming_is_injective_and_stable(
            pairs in proptest::collection::vec((prefix_strategy(), "\\PC{1,90}"), 1..40),
        ) {
            let mut seen: HashMap<String, (String, String)> = HashMap::new();
            for (prefix, name) in pairs {
                let out = exposed(&prefix, &name);
                prop_assert!(out.len() <= MAX_NAME, "{out}");
                prop_assert!(out.chars().all(plain), "{out}");
                prop_assert_eq!(prefix_of(&out), Some(prefix.as_str()));
                prop_assert_eq!(&out, &exposed(&prefix, &name));
                if let Some(natural) = natural_name(&prefix, &out) {
                    prop_assert_eq!(natural, name.as_str());
                }
                if let Some(previous) = seen.insert(out.clone(), (prefix.clone(), name.clone())) {
                    prop_assert_eq!(previous, (prefix, name), "collision on {}", out);
                }
            }
        }

        /// Names of two servers never collide even when tool names are chosen adversarially
        /// around the separator.
        #[test]
        fn separator_games_do_not_collide(a in "[a-z]{1,3}", b in "[a-z_]{0,4}", t in "[a-z_]{1,6}") {
            let p1 = a.clone();
            let p2 = format!("{a}{b}").trim_end_matches('_').replace("__", "_");
            prop_assume!(validate_prefix(&p2).is_ok() && p1 != p2);
            let t2 = format!("{b}{t}");
            prop_assert_ne!(exposed(&p1, &format!("_{t2}")), exposed(&p2, &t));
            prop_assert_ne!(exposed(&p1, &t2), exposed(&p2, &t));
        }
    }
}
