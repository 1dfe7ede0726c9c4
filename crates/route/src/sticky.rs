//! The sticky hash: which of 10,000 buckets a user's key falls into.
//!
//! # The function (a contract: changing it moves users between versions)
//!
//! ```text
//! bucket(key, seed, level) = xxh3_64(key, seed ^ (level * 0x9E3779B97F4A7C15)) mod 10_000
//! ```
//!
//! `xxh3_64` is XXH3 64-bit with a seed, as specified by the xxHash project (stable
//! output on every platform and endianness); `key` is the raw bytes of the header or
//! cookie value; `seed` is the route's `hash_seed`; `level` counts the split's
//! decisions from the last backend backwards (see [`crate::split`]), or is
//! [`SHADOW_LEVEL`] for the shadow sample; the product wraps at 2^64. Level 0 uses the
//! seed unchanged. A user is mirrored when their shadow-level bucket is below
//! `round(percent · 100)`, so raising `percent` only adds users to the shadow. The test vectors below pin the function:
//! a change that breaks them re-assigns users and needs a release note.

use http::{header::COOKIE, HeaderMap};
use veer_config::SplitBy;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// How many buckets a sticky key is hashed into: the resolution of a split, 0.01 %.
pub const BUCKETS: u32 = 10_000;

/// Spreads levels over the seed space (2^64 / golden ratio, odd).
const LEVEL_SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

/// The level of the shadow sample: far from the split's levels (one per backend), so
/// whether a user is mirrored is independent of which version serves them.
pub const SHADOW_LEVEL: u32 = u32::MAX;

/// `percent` (0 to 100) of [`BUCKETS`], rounded.
pub fn percent_buckets(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) * f64::from(BUCKETS) / 100.0).round() as u32
}

/// The bucket in `0..BUCKETS` of `key` for one decision level of a split.
pub fn bucket(key: &[u8], seed: u64, level: u32) -> u32 {
    let seed = seed ^ u64::from(level).wrapping_mul(LEVEL_SPREAD);
    (xxh3_64_with_seed(key, seed) % u64::from(BUCKETS)) as u32
}

/// The user's key as `split_by` names it, or `None` when the request lacks it (or the
/// split is random): such a request falls back to a random draw.
pub fn key<'h>(split_by: &SplitBy, headers: &'h HeaderMap) -> Option<&'h [u8]> {
    match split_by {
        SplitBy::Random => None,
        SplitBy::Header(name) => headers
            .get(name)
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty()),
        SplitBy::Cookie(name) => headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = pair.trim_ascii();
                let (k, v) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
                (k == name.as_bytes()).then_some(&v[1..])
            })
            .filter(|v| !v.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;

    /// Committed test vectors: these values are a promise to every running replica.
    #[test]
    fn hash_is_pinned_by_test_vectors() {
        let vectors: [(&[u8], u64, u32, u32); 6] = [
            (b"", 0, 0, VECTOR_0),
            (b"user-1", 0, 0, VECTOR_1),
            (b"user-1", 7, 0, VECTOR_2),
            (b"user-1", 7, 1, VECTOR_3),
            (b"alice@example.com", 42, 0, VECTOR_4),
            (b"\xff\x00binary", 0, 2, VECTOR_5),
        ];
        for (key, seed, level, want) in vectors {
            assert_eq!(
                bucket(key, seed, level),
                want,
                "key {key:?} seed {seed} level {level}"
            );
        }
    }

    // Computed independently with the C xxHash library (python-xxhash):
    // xxh3_64_intdigest(key, seed=seed ^ (level * 0x9E3779B97F4A7C15 mod 2**64)) % 10000
    const VECTOR_0: u32 = 3138;
    const VECTOR_1: u32 = 6057;
    const VECTOR_2: u32 = 912;
    const VECTOR_3: u32 = 6682;
    const VECTOR_4: u32 = 9220;
    const VECTOR_5: u32 = 3899;

    #[test]
    fn xxh3_itself_matches_the_reference_output() {
        // From the xxHash reference implementation's sanity checks (empty input).
        assert_eq!(xxh3_64_with_seed(b"", 0), 0x2D06_8005_38D3_94C2);
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn header_key_is_the_raw_value_and_empty_means_absent() {
        let by = SplitBy::Header(HeaderName::from_static("x-user-id"));
        assert_eq!(
            key(&by, &headers(&[("x-user-id", "u42")])),
            Some(&b"u42"[..])
        );
        assert_eq!(key(&by, &headers(&[("x-user-id", "")])), None);
        assert_eq!(key(&by, &headers(&[])), None);
        assert_eq!(key(&SplitBy::Random, &headers(&[("x-user-id", "u")])), None);
    }

    #[test]
    fn cookie_key_is_found_among_many_cookies_and_headers() {
        let by = SplitBy::Cookie("uid".into());
        let h = headers(&[("cookie", "a=1; xuid=no"), ("cookie", "b=2;uid=u-7 ; c=3")]);
        assert_eq!(key(&by, &h), Some(&b"u-7"[..]));
        assert_eq!(key(&by, &headers(&[("cookie", "uid=")])), None);
        assert_eq!(key(&by, &headers(&[("cookie", "uidx=1; noequals")])), None);
    }
}
