//! The compiled route table: one config generation's routes, ready to decide.

use http::{header::HOST, uri::Authority, HeaderMap, Method, Uri};
use rand::Rng;
use veer_config::{BackendId, Config, Route};

use crate::{matcher, split::Split, sticky};

/// Index of a route in [`RouteTable`] (file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(pub usize);

/// Which route takes a request and which backend serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The first route whose match the request met.
    pub route: RouteId,
    /// The backend its split picked.
    pub backend: BackendId,
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

    /// The requested host without its port: the Host header, else the URI's authority
    /// (HTTP/2 sends `:authority` instead of Host).
    pub fn host(&self) -> Option<&'a str> {
        match self.headers.get(HOST) {
            Some(value) => {
                let text = value.to_str().ok()?;
                let end = if text.starts_with('[') {
                    text.find(']').map_or(text.len(), |i| i + 1)
                } else {
                    text.find(':').unwrap_or(text.len())
                };
                Some(&text[..end])
            }
            None => self.uri.authority().map(Authority::host),
        }
    }
}

/// One config generation's routes with their splits laid out.
#[derive(Debug, Clone)]
pub struct RouteTable {
    config: Config,
    splits: Vec<Split>,
}

impl RouteTable {
    /// Compiles a validated config.
    pub fn new(config: Config) -> RouteTable {
        let splits = config.routes.iter().map(|r| Split::new(&r.split)).collect();
        RouteTable { config, splits }
    }

    /// The config this table was compiled from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The route behind an id from this table.
    pub fn route(&self, id: RouteId) -> &Route {
        &self.config.routes[id.0]
    }

    /// The first route `head` matches and the backend its split picks, or `None` when
    /// no route matches. `rng` is drawn from only for random splits and for sticky
    /// splits whose key the request lacks.
    pub fn decide<R: Rng + ?Sized>(&self, head: &RequestHead<'_>, rng: &mut R) -> Option<Decision> {
        let (index, route) = self
            .config
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| matcher::matches(&r.matcher, head))?;
        let split = &self.splits[index];
        let backend = match sticky::key(&route.split_by, head.headers) {
            Some(key) => split.pick_sticky(key, route.hash_seed),
            None => split.pick_random(rng.random_range(0..split.total())),
        };
        Some(Decision {
            route: RouteId(index),
            backend,
        })
    }
}
