//! Real HTTP/1.1 backends on `127.0.0.1:0`, one tokio task each, stopped on drop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How a test backend answers.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// 200 with this body.
    Fixed(String),
    /// 200 streaming the request body back unchanged.
    Echo,
    /// 200 with a JSON object of the request head: `method`, `uri`, `version` and
    /// `headers` (name → list of values).
    Inspect,
    /// Waits this long, then 200 `slow`.
    Slow(Duration),
    /// This status with a short body.
    Status(u16),
    /// Accepts the connection and closes it at once, without a response.
    Closes,
    /// Accepts, reads, never answers.
    Hangs,
    /// Reads the whole request, keeps it (see [`TestBackend::received`]), then
    /// answers 200 with this body (as JSON).
    Records(String),
    /// Answers 500 to `percent` of every 100 requests, spread evenly in arrival
    /// order, and 200 `ok` to the others: a candidate that fails that often.
    Failing {
        /// Share of requests failed, 0 to 100.
        percent: u64,
    },
    /// A classifier: answers `{"predictions": ["yes"]}`, or `["no"]` for the
    /// `flip_percent` of request bodies whose hash falls there, always the same
    /// answer to the same body. Two of them with different `flip_percent` disagree
    /// on about the difference of inputs.
    Predicts {
        /// Share of inputs answered "no", 0 to 100.
        flip_percent: u64,
    },
}

/// A request as a [`Behavior::Records`] backend received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request's path and query, as the backend saw them.
    pub uri: http::Uri,
    /// Request headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// A running backend; stops when dropped.
pub struct TestBackend {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl TestBackend {
    /// Starts a backend with `behavior` on a fresh loopback port.
    pub async fn start(behavior: Behavior) -> TestBackend {
        TestBackend::start_with(behavior, None).await
    }

    /// Starts an HTTPS backend (HTTP/1.1 or HTTP/2 by ALPN) with `behavior`,
    /// serving `tls`'s certificate.
    pub async fn start_tls(behavior: Behavior, tls: Arc<rustls::ServerConfig>) -> TestBackend {
        TestBackend::start_with(behavior, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(behavior: Behavior, tls: Option<tokio_rustls::TlsAcceptor>) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for a test backend");
        let addr = listener
            .local_addr()
            .expect("local address of a bound socket");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                match behavior {
                    Behavior::Closes => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        drop(stream);
                    }
                    Behavior::Hangs => {
                        counter.fetch_add(1, Ordering::SeqCst);
                        held.push(stream);
                    }
                    _ => {
                        let behavior = behavior.clone();
                        let (counter, sink) = (counter.clone(), sink.clone());
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let service = service_fn(move |req| {
                                let n = counter.fetch_add(1, Ordering::SeqCst) as u64;
                                answer(behavior.clone(), req, sink.clone(), n)
                            });
                            let builder = auto::Builder::new(TokioExecutor::new());
                            let _ = match tls {
                                None => {
                                    builder
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await
                                }
                                Some(tls) => match tls.accept(stream).await {
                                    Ok(stream) => {
                                        builder
                                            .serve_connection(TokioIo::new(stream), service)
                                            .await
                                    }
                                    Err(_) => return,
                                },
                            };
                        });
                    }
                }
            }
        });
        TestBackend {
            addr,
            requests,
            received,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for a config's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of a backend started with [`TestBackend::start_tls`],
    /// `https://localhost:PORT` (the name its test certificate carries).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Requests (or, for `Closes` and `Hangs`, connections) seen so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// What a [`Behavior::Records`] backend has received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type AnswerBody = BoxBody<Bytes, hyper::Error>;

fn full(body: impl Into<Bytes>) -> AnswerBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

async fn answer(
    behavior: Behavior,
    req: Request<Incoming>,
    sink: Arc<Mutex<Vec<Received>>>,
    n: u64,
) -> Result<Response<AnswerBody>, Infallible> {
    let response = match behavior {
        Behavior::Fixed(body) => Response::new(full(body)),
        Behavior::Echo => Response::new(req.into_body().boxed()),
        Behavior::Inspect => {
            let mut headers = serde_json::Map::new();
            for name in req.headers().keys() {
                let values: Vec<serde_json::Value> = req
                    .headers()
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into())
                    .collect();
                headers.insert(name.to_string(), values.into());
            }
            let head = serde_json::json!({
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "version": format!("{:?}", req.version()),
                "headers": headers,
            });
            let mut response = Response::new(full(head.to_string()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Behavior::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Response::new(full("slow"))
        }
        Behavior::Status(code) => {
            let mut response = Response::new(full(format!("status {code}")));
            *response.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            response
        }
        Behavior::Records(body) => {
            let (parts, incoming) = req.into_parts();
            let bytes = match incoming.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => Bytes::from(format!("body error: {e}")),
            };
            if let Ok(mut sink) = sink.lock() {
                sink.push(Received {
                    uri: parts.uri,
                    headers: parts.headers,
                    body: bytes,
                });
            }
            let mut response = Response::new(full(body));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Behavior::Failing { percent } => {
            // The n-th request fails when the running count of failures owed steps up.
            let fails = (n + 1) * percent / 100 != n * percent / 100;
            let mut response = Response::new(full(if fails { "failed" } else { "ok" }));
            if fails {
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
            response
        }
        Behavior::Predicts { flip_percent } => {
            let body = match req.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            // FNV-1a: the same body always lands on the same answer.
            let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            let label = if hash % 100 < flip_percent {
                "no"
            } else {
                "yes"
            };
            let mut response = Response::new(full(format!("{{\"predictions\": [\"{label}\"]}}")));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Behavior::Closes | Behavior::Hangs => unreachable!("answered at accept"),
    };
    Ok(response)
}
