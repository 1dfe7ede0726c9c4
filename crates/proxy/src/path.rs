//! Request paths as routes and backends see them: dot-segments removed.
//!
//! `/v1/models/churn/../../admin` must not match a `/v1/models/churn` prefix route
//! and then reach the backend, which resolves it to `/admin`. veer resolves it first
//! (RFC 3986 §5.2.4), with percent-encoded dots (`%2e`, `%2E`) counted as dots,
//! and both matches and forwards the result. A path that climbs above the root
//! stays at the root, as the RFC says.

use std::borrow::Cow;

/// `path` without dot-segments, borrowed when it has none (almost always).
pub(crate) fn normalize(path: &str) -> Cow<'_, str> {
    if !may_have_dot_segments(path) {
        return Cow::Borrowed(path);
    }
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    // A trailing dot-segment leaves the path ending in "/" (RFC 3986: "/a/b/.." → "/a/").
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match dots(segment) {
            Some(1) => trailing_slash = i == last,
            Some(2) => {
                kept.pop();
                trailing_slash = i == last;
            }
            _ => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    }
}

/// Cheap screen: a dot-segment starts right after a '/' with '.' or "%2e".
fn may_have_dot_segments(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.windows(2).any(|w| w == b"/.")
        || bytes
            .windows(4)
            .any(|w| w[0] == b'/' && w[1] == b'%' && w[2] == b'2' && (w[3] | 0x20) == b'e')
}

/// 1 for ".", 2 for "..", in any mix of '.' and "%2e"; `None` for anything else.
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut count = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1] == b'2' && (rest[2] | 0x20) == b'e'
        {
            rest = &rest[3..];
        } else {
            return None;
        }
        count += 1;
    }
    (1..=2).contains(&count).then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_resolved_encoded_or_not() {
        for (path, expected) in [
            ("/v1/models/churn:predict", "/v1/models/churn:predict"),
            ("/v1/models/churn/../../admin", "/v1/admin"),
            ("/v1/models/churn/%2e%2e/%2E%2e/admin", "/v1/admin"),
            ("/v1/models/churn/.%2e/x", "/v1/models/x"),
            ("/v1/./models", "/v1/models"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/", "/"),
            ("/.well-known/x", "/.well-known/x"),
            ("/v1/model.v2/...", "/v1/model.v2/..."),
            ("/a//b/../c", "/a//c"),
        ] {
            assert_eq!(normalize(path), expected, "{path}");
        }
    }

    #[test]
    fn paths_without_dot_segments_are_not_copied() {
        assert!(matches!(
            normalize("/v1/models/churn.v2:predict"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(normalize("/.well-known/x"), Cow::Borrowed(_)));
    }
}
