//! Test-only TLS: a throwaway certificate authority with server and client
//! certificates written as PEM files, clients that trust it, and HTTPS backends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;

use crate::client::Answer;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority and the files it issued, in a temp folder of their own.
pub struct TestPki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl TestPki {
    /// A fresh CA, with `server.crt`/`server.key` (for `localhost` and 127.0.0.1,
    /// named `first`) and `client.crt`/`client.key` issued, and `ca.pem` written.
    pub fn new() -> TestPki {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "veer-pki-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create the pki folder");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "veer test CA");
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = params.self_signed(&ca_key).expect("self-signed ca");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
        let pki = TestPki { dir, ca, ca_key };
        pki.issue("server", "first");
        pki.issue("client", "veer-client");
        pki
    }

    /// Issues `NAME.crt` and `NAME.key` (for `localhost` and 127.0.0.1, common name
    /// `cn`), replacing earlier ones: a rotation.
    pub fn issue(&self, name: &str, cn: &str) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("leaf signed by the ca");
        std::fs::write(self.path(&format!("{name}.crt")), cert.pem()).expect("write cert");
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).expect("write key");
    }

    /// A file of this PKI's folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The DER of the certificate in `NAME.crt`.
    pub fn certificate(&self, name: &str) -> Vec<u8> {
        let path = self.path(&format!("{name}.crt"));
        CertificateDer::from_pem_file(path)
            .expect("a PEM certificate")
            .to_vec()
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_file(self.path("ca.pem")).expect("ca.pem");
        roots.add(ca).expect("the ca is a valid root");
        roots
    }

    /// A client configuration trusting this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> ClientConfig {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// A server configuration with `server.crt`; when `require_client` is true,
    /// clients must present a certificate this CA issued.
    pub fn server_config(&self, require_client: bool) -> Arc<ServerConfig> {
        let certs = vec![CertificateDer::from_pem_file(self.path("server.crt")).expect("cert")];
        let key = PrivateKeyDer::from_pem_file(self.path("server.key")).expect("key");
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.roots()),
                provider(),
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(certs, key).expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Connects to `addr` over TLS offering `alpn`: the negotiated protocol and the
    /// DER of the certificate served, or the handshake's error.
    pub async fn handshake(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> Result<(Option<Vec<u8>>, Vec<u8>), String> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.client_config(alpn)));
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (_, session) = tls.get_ref();
        let served = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        Ok((session.alpn_protocol().map(<[u8]>::to_vec), served))
    }

    /// A client of `https://localhost:PORT` trusting this CA; HTTP/2 only when
    /// `h2`, else HTTP/1.1.
    pub fn client(&self, addr: SocketAddr, h2: bool) -> TlsClient {
        // The connector offers ALPN itself, from the protocol enabled below.
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.client_config(&[]))
            .https_only();
        let connector = if h2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let client = Client::builder(TokioExecutor::new())
            .http2_only(h2)
            .build(connector);
        TlsClient {
            client,
            base: format!("https://localhost:{}", addr.port()),
        }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

/// An HTTPS client for one server.
pub struct TlsClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
}

impl TlsClient {
    /// GETs `path`: the answer and the HTTP version it came over.
    pub async fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Answer, Version), String> {
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let version = resp.version();
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok((
                Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                },
                version,
            ))
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), call)
            .await
            .map_err(|_| "no answer within 20s".to_owned())?
    }
}
