//! A stand-in model server for trying veer by hand: answers every request with a
//! KServe V1-style prediction naming itself.
//!
//! `model-backend --addr 127.0.0.1:8001 --name churn-v1 [--delay 200ms]`
//!
//! `--delay` holds every answer that long (a slow shadow, in the load benchmark).

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let addr = flag("--addr", "127.0.0.1:8001");
    let name = flag("--name", "model");
    let delay = humantime::parse_duration(&flag("--delay", "0s"))?;
    let listener = TcpListener::bind(&addr).await?;
    eprintln!(
        "model-backend {name} listening on {}",
        listener.local_addr()?
    );
    let body = Bytes::from(
        serde_json::json!({ "predictions": [0.27, 0.73], "model_version": name }).to_string(),
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let mut response = Response::new(Full::new(body.clone()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
