//! A route compiled for deciding ([`Rule`]), and the decision over a list of them.

use http::{header::HOST, HeaderMap, Method, Uri};
use rand::Rng;
use veer_config::{BackendId, Match, Route, SplitBy, WeightedBackend};

use crate::{matcher, split::Split, sticky};

/// Index of a route in the slice [`decide`] was given (file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(pub usize);

/// Which route takes a request, which backend serves it, and where it is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The first route whose match the request met.
    pub route: RouteId,
    /// The backend its split picked.
    pub backend: BackendId,
    /// The shadow backend, when the route has one and this request is sampled (and
    /// the live pick is not the shadow backend itself: a version is not compared
    /// with itself).
    pub shadow: Option<BackendId>,
}

/// The parts of a request that routing looks at, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request target (origin-form for HTTP/1.1, absolute for HTTP/2).
    pub uri: &'a Uri,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestHead<'a> {
    /// Borrows the head of `req`.
    pub fn of<B>(req: &'a http::Request<B>) -> Self {
        RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        }
    }

    /// The requested host without its port: the URI's authority when it has one
    /// (HTTP/2's `:authority`, an absolute-form URI), which wins over Host as RFC
    /// 9110 says, else the Host header.
    pub fn host(&self) -> Option<&'a str> {
        if let Some(authority) = self.uri.authority() {
            return Some(authority.host());
        }
        let text = self.headers.get(HOST)?.to_str().ok()?;
        let end = if text.starts_with('[') {
            text.find(']').map_or(text.len(), |i| i + 1)
        } else {
            text.find(':').unwrap_or(text.len())
        };
        Some(&text[..end])
    }
}

/// One route's decision data, compiled once per config generation: its match, its
/// split laid out over buckets, how a request's key is found, and its shadow sample.
#[derive(Debug, Clone)]
pub struct Rule {
    matcher: Match,
    /// The split as written, for picking again without an ejected backend.
    entries: Vec<WeightedBackend>,
    split: Split,
    split_by: SplitBy,
    hash_seed: u64,
    /// The shadow backend and how many of 10,000 buckets are mirrored.
    shadow: Option<(BackendId, u32)>,
}

/// What a route's rule picked for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// The live backend.
    pub backend: BackendId,
    /// The shadow backend, when this request is mirrored.
    pub shadow: Option<BackendId>,
}

impl Rule {
    /// Compiles a validated route.
    pub fn new(route: &Route) -> Rule {
        Rule {
            matcher: route.matcher.clone(),
            entries: route.split.clone(),
            split: Split::new(&route.split),
            split_by: route.split_by.clone(),
            hash_seed: route.hash_seed,
            shadow: route
                .shadow
                .as_ref()
                .map(|s| (s.backend, sticky::percent_buckets(s.percent))),
        }
    }

    /// True when `head` (whose path is `path`) meets every condition of the route's
    /// match.
    pub fn matches(&self, head: &RequestHead<'_>, path: &str) -> bool {
        matcher::matches(&self.matcher, head, path)
    }

    /// The backend this route's split picks for `head`, and whether the request is
    /// mirrored. `rng` is drawn from only for random splits and for sticky splits
    /// whose key the request lacks.
    pub fn pick<R: Rng + ?Sized>(&self, head: &RequestHead<'_>, rng: &mut R) -> Pick {
        let key = sticky::key(&self.split_by, head.headers);
        let backend = match key {
            Some(key) => self.split.pick_sticky(key, self.hash_seed),
            None => self
                .split
                .pick_random(rng.random_range(0..self.split.total())),
        };
        let shadow = self.shadow.and_then(|(shadow, buckets)| {
            let bucket = match key {
                Some(key) => sticky::bucket(key, self.hash_seed, sticky::SHADOW_LEVEL),
                None => rng.random_range(0..sticky::BUCKETS),
            };
            (bucket < buckets && shadow != backend).then_some(shadow)
        });
        Pick { backend, shadow }
    }
}

impl Rule {
    /// The pick for `head` among the backends `usable` allows only, as if the others
    /// had weight 0: a user sticky to an ejected backend goes to another one by the
    /// same key, and returns once it is back. `None` when the usable backends carry
    /// less than half of the route's weight: ejection moves a small share (a failing
    /// 5 % canary) onto the rest, never the bulk of a route onto a small share (a
    /// failing baseline onto an unproven canary), as Envoy's `max_ejection_percent`
    /// guards against.
    pub fn pick_among<R: Rng + ?Sized>(
        &self,
        head: &RequestHead<'_>,
        rng: &mut R,
        usable: impl Fn(BackendId) -> bool,
    ) -> Option<BackendId> {
        let remaining: Vec<WeightedBackend> = self
            .entries
            .iter()
            .map(|e| WeightedBackend {
                weight: if usable(e.backend) { e.weight } else { 0 },
                ..*e
            })
            .collect();
        let total: u64 = self.entries.iter().map(|e| e.weight).sum();
        let usable_weight: u64 = remaining.iter().map(|e| e.weight).sum();
        if usable_weight == 0 || usable_weight * 2 < total {
            return None;
        }
        let split = Split::new(&remaining);
        Some(match sticky::key(&self.split_by, head.headers) {
            Some(key) => split.pick_sticky(key, self.hash_seed),
            None => split.pick_random(rng.random_range(0..split.total())),
        })
    }
}

impl AsRef<Rule> for Rule {
    fn as_ref(&self) -> &Rule {
        self
    }
}

/// The first of `routes` that `head` matches and what its rule picks, or `None` when
/// no route matches. Routes are anything that holds a [`Rule`], so a caller's own
/// per-route struct (with its handles and settings) is decided on directly.
pub fn decide<T: AsRef<Rule>, R: Rng + ?Sized>(
    routes: &[T],
    head: &RequestHead<'_>,
    rng: &mut R,
) -> Option<Decision> {
    let path = head.uri.path();
    let (index, rule) = routes
        .iter()
        .map(AsRef::as_ref)
        .enumerate()
        .find(|(_, rule)| rule.matches(head, path))?;
    let Pick { backend, shadow } = rule.pick(head, rng);
    Some(Decision {
        route: RouteId(index),
        backend,
        shadow,
    })
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};
    use rand::SeedableRng;
    use veer_config::Config;

    use super::*;

    fn table(shadow: &str, split_by: &str) -> Vec<Rule> {
        let toml = format!(
            r#"
[backends.v1]
url = "http://127.0.0.1:1"
[backends.v2]
url = "http://127.0.0.1:2"
[[routes]]
name = "r"
split = [ {{ backend = "v1", weight = 9 }}, {{ backend = "v2", weight = 1 }} ]
split_by = {split_by}
{shadow}
"#
        );
        let config = Config::from_toml("t.toml", &toml).expect("valid").config;
        config.routes.iter().map(Rule::new).collect()
    }

    fn decide(table: &[Rule], user: Option<&str>, rng: &mut rand::rngs::StdRng) -> Decision {
        let mut headers = HeaderMap::new();
        if let Some(u) = user {
            headers.insert("x-user-id", HeaderValue::from_str(u).unwrap());
        }
        let uri: Uri = "/p".parse().unwrap();
        let head = RequestHead {
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
        };
        super::decide(table, &head, rng).expect("the catch-all route matches")
    }

    #[test]
    fn shadow_is_sampled_per_user_and_never_mirrors_a_backend_to_itself() {
        let t = table(
            "[routes.shadow]\nbackend = \"v2\"\npercent = 30",
            "{ header = \"x-user-id\" }",
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (mut mirrored, mut eligible) = (0, 0);
        for i in 0..10_000 {
            let user = format!("u{i}");
            let d = decide(&t, Some(&user), &mut rng);
            assert_eq!(
                d,
                decide(&t, Some(&user), &mut rng),
                "{user} is decided the same way twice"
            );
            if d.backend == BackendId(1) {
                assert_eq!(d.shadow, None, "v2 live is not mirrored to v2");
            } else {
                eligible += 1;
                mirrored += usize::from(d.shadow == Some(BackendId(1)));
            }
        }
        let share = mirrored as f64 / eligible as f64;
        assert!((share - 0.3).abs() < 0.03, "{share}");
    }

    #[test]
    fn an_unusable_backend_s_users_move_and_come_back_by_the_same_key() {
        let t = table("", "{ header = \"x-user-id\" }");
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let uri: Uri = "/p".parse().unwrap();
        for i in 0..2_000 {
            let user = format!("u{i}");
            let mut headers = HeaderMap::new();
            headers.insert("x-user-id", HeaderValue::from_str(&user).unwrap());
            let head = RequestHead {
                method: &Method::GET,
                uri: &uri,
                headers: &headers,
            };
            let usual = t[0].pick(&head, &mut rng).backend;
            let without_v2 = t[0].pick_among(&head, &mut rng, |b| b != BackendId(1));
            assert_eq!(
                without_v2,
                Some(BackendId(0)),
                "{user} goes to v1 while v2 is out"
            );
            let with_all = t[0].pick_among(&head, &mut rng, |_| true);
            assert_eq!(with_all, Some(usual), "{user} is back where it was");
            assert_eq!(t[0].pick_among(&head, &mut rng, |_| false), None);
            assert_eq!(
                t[0].pick_among(&head, &mut rng, |b| b != BackendId(0)),
                None,
                "the 90 % baseline's users are never all moved onto the 10 % canary"
            );
        }
    }

    #[test]
    fn without_a_key_the_shadow_sample_is_random() {
        let t = table(
            "[routes.shadow]\nbackend = \"v2\"\npercent = 50",
            "\"random\"",
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let shadowed = (0..4_000)
            .map(|_| decide(&t, None, &mut rng))
            .filter(|d| d.shadow.is_some())
            .count();
        // Of ~3,600 v1-served requests, half are mirrored.
        assert!((1_600..2_000).contains(&shadowed), "{shadowed}");
    }

    #[test]
    fn no_shadow_section_means_no_mirror() {
        let t = table("", "\"random\"");
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        assert!((0..100).all(|_| decide(&t, None, &mut rng).shadow.is_none()));
    }
}
