//! TLS for our gRPC sockets, with rustls and its ring provider.
//!
//! - Servers: [`ServerTlsFiles`] (`--tls-cert`, `--tls-key`, optional `--tls-client-ca`; with a
//!   client CA every client must present a certificate it signed) → a rustls `ServerConfig`
//!   offering HTTP/2 (ALPN `h2`). [`Acceptor`] does the handshake of one accepted connection
//!   (bounded by [`HANDSHAKE_TIMEOUT`]); [`incoming`] turns a listener into a stream of
//!   handshaken connections for tonic's server, handshaking each connection in its own task so
//!   that a slow or silent client never holds up the others.
//! - Clients: [`ClientTlsFiles`] (`--<service>-tls-ca`, `-cert`, `-key`; without a CA the
//!   system's roots) → a rustls `ClientConfig`; [`channel`] builds a lazily connecting tonic
//!   channel that speaks TLS to an `https://` endpoint and plain HTTP/2 to an `http://` one;
//!   its handshake too is bounded by [`HANDSHAKE_TIMEOUT`].
//!
//! A PEM file that cannot be read or holds nothing usable is an error naming the file.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Channel, Endpoint, Uri};

/// How long a TLS handshake may take: a client has this long to complete it with our servers,
/// and our clients wait this long for a server's.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ALPN protocol of gRPC.
const H2: &[u8] = b"h2";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the {what} {path} is not usable: {reason}")]
    Parse {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Options(String),
    #[error("{context}: {source}")]
    Rustls {
        context: String,
        source: rustls::Error,
    },
    #[error("loading the system's root certificates: {0}")]
    NativeRoots(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in the PEM file at `path` (at least one).
pub fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path, what)?;
    let parse_error = |reason: String| TlsError::Parse {
        what,
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| parse_error(format!("bad PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(parse_error("no CERTIFICATE block in it".to_owned()));
    }
    Ok(certificates)
}

/// The private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`.
pub fn read_private_key(
    path: &Path,
    what: &'static str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| TlsError::Parse {
        what,
        path: path.to_owned(),
        reason: match error {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block in it".to_owned(),
            other => format!("bad PEM: {other}"),
        },
    })
}

fn root_store(path: &Path, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path, what)? {
        roots.add(certificate).map_err(|error| TlsError::Parse {
            what,
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
    }
    Ok(roots)
}

/// A server's certificate, key and optional client CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// From the server flags: `None` (plaintext) when none is given; a certificate needs its key
    /// and the other way round, and a client CA needs both.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        client_ca: Option<PathBuf>,
    ) -> Result<Option<ServerTlsFiles>, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(ServerTlsFiles {
                cert,
                key,
                client_ca,
            })),
            (None, None) if client_ca.is_none() => Ok(None),
            (None, None) => Err(TlsError::Options(
                "--tls-client-ca needs --tls-cert and --tls-key".to_owned(),
            )),
            (Some(_), None) => Err(TlsError::Options("--tls-cert needs --tls-key".to_owned())),
            (None, Some(_)) => Err(TlsError::Options("--tls-key needs --tls-cert".to_owned())),
        }
    }

    /// The rustls server configuration (TLS 1.2 and 1.3, ALPN `h2`).
    pub fn load(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certificates = read_certificates(&self.cert, "server certificate (--tls-cert)")?;
        let key = read_private_key(&self.key, "server key (--tls-key)")?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls {
                context: "choosing TLS versions".to_owned(),
                source,
            })?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let roots = root_store(ca, "client CA (--tls-client-ca)")?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|error| TlsError::Parse {
                            what: "client CA (--tls-client-ca)",
                            path: ca.clone(),
                            reason: error.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certificates, key)
            .map_err(|source| TlsError::Rustls {
                context: format!(
                    "the server certificate {} and key {}",
                    self.cert.display(),
                    self.key.display()
                ),
                source,
            })?;
        config.alpn_protocols = vec![H2.to_vec()];
        Ok(Arc::new(config))
    }
}

/// What a client trusts and presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// The CA the server's certificate must chain to; the system's roots when unset.
    pub ca: Option<PathBuf>,
    /// The client certificate (with `key`), for servers that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The flag prefix for error messages, e.g. `--safety-tls`.
    pub flag: &'static str,
}

impl ClientTlsFiles {
    /// Whether any file is given.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The rustls client configuration (TLS 1.2 and 1.3, ALPN `h2`).
    pub fn load(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let flag = self.flag;
        let roots = match &self.ca {
            Some(ca) => root_store(ca, "CA certificate")?,
            None => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::NativeRoots(format!(
                        "none found ({} errors); give {flag}-ca",
                        found.errors.len()
                    )));
                }
                roots
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls {
                context: "choosing TLS versions".to_owned(),
                source,
            })?
            .with_root_certificates(roots);
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let certificates = read_certificates(cert, "client certificate")?;
                let key_der = read_private_key(key, "client key")?;
                builder
                    .with_client_auth_cert(certificates, key_der)
                    .map_err(|source| TlsError::Rustls {
                        context: format!(
                            "the client certificate {} and key {}",
                            cert.display(),
                            key.display()
                        ),
                        source,
                    })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(TlsError::Options(format!("{flag}-cert needs {flag}-key")));
            }
            (None, Some(_)) => {
                return Err(TlsError::Options(format!("{flag}-key needs {flag}-cert")));
            }
        };
        config.alpn_protocols = vec![H2.to_vec()];
        Ok(Arc::new(config))
    }
}

/// Why a client channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("{flag}-* options are set but {endpoint} is not an https:// endpoint")]
    TlsWithoutHttps {
        flag: &'static str,
        endpoint: String,
    },
    #[error("TLS for {endpoint}: {source}")]
    Tls { endpoint: String, source: TlsError },
}

/// A lazily connecting channel to `endpoint`: TLS (with `tls`, or the system's roots) for
/// `https://`, plaintext HTTP/2 for `http://`. `configure` sets the endpoint's timeouts and
/// the like. TLS options with an `http://` endpoint are an error rather than a silent
/// plaintext connection.
pub fn channel(
    endpoint: &str,
    tls: &ClientTlsFiles,
    configure: impl FnOnce(Endpoint) -> Endpoint,
) -> Result<Channel, ChannelError> {
    let parsed =
        Endpoint::from_shared(endpoint.to_owned()).map_err(|error| ChannelError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason: error.to_string(),
        })?;
    let https = parsed.uri().scheme_str() == Some("https");
    let configured = configure(parsed);
    if !https {
        if tls.is_set() {
            return Err(ChannelError::TlsWithoutHttps {
                flag: tls.flag,
                endpoint: endpoint.to_owned(),
            });
        }
        return Ok(configured.connect_lazy());
    }
    let config = tls.load().map_err(|source| ChannelError::Tls {
        endpoint: endpoint.to_owned(),
        source,
    })?;
    // tonic is built without its own TLS: this connector does the handshake.
    Ok(configured.connect_with_connector_lazy(TlsConnector::new(config)))
}

/// TCP (nodelay, keepalive) then a rustls handshake naming the URI's host.
#[derive(Clone)]
pub struct TlsConnector {
    tcp: HttpConnector,
    tls: tokio_rustls::TlsConnector,
}

impl TlsConnector {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_keepalive(Some(Duration::from_secs(30)));
        TlsConnector {
            tcp,
            tls: tokio_rustls::TlsConnector::from(config),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower::Service::<Uri>::poll_ready(&mut self.tcp, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let connect = tower::Service::call(&mut self.tcp, uri);
        let tls = self.tls.clone();
        Box::pin(async move {
            let name = ServerName::try_from(host.clone())
                .map_err(|error| format!("{host:?} is not a TLS server name: {error}"))?;
            let tcp = connect.await?.into_inner();
            // A server that accepts the connection but never answers must not hold the call.
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(name, tcp))
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "TLS handshake with {host} timed out after {}s",
                            HANDSHAKE_TIMEOUT.as_secs()
                        ),
                    )
                })??;
            Ok(TokioIo::new(stream))
        })
    }
}

/// Does the server side of the handshake.
#[derive(Clone)]
pub struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
}

impl Acceptor {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        Acceptor {
            inner: tokio_rustls::TlsAcceptor::from(config),
        }
    }

    /// The handshake on an accepted connection, at most [`HANDSHAKE_TIMEOUT`] long.
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.inner.accept(stream)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

/// A handshaken server connection, for tonic's server.
pub struct TlsConnection(tokio_rustls::server::TlsStream<TcpStream>);

impl TlsConnection {
    /// The client's certificate chain, when it presented one.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.0.get_ref().1.peer_certificates()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

/// Accepts on `listener` and yields each connection once its handshake succeeded; failed
/// handshakes are logged (debug) and dropped. Ends when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> impl futures::Stream<Item = io::Result<TlsConnection>> + Send + 'static {
    let acceptor = Acceptor::new(config);
    let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<TlsConnection>>(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = sender.closed() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
                    }
                    let acceptor = acceptor.clone();
                    let sender = sender.clone();
                    tokio::spawn(async move {
                        match acceptor.accept(stream).await {
                            Ok(tls) => {
                                let _ = sender.send(Ok(TlsConnection(tls))).await;
                            }
                            Err(error) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                            }
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("telemetry-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("writes");
        path
    }

    #[test]
    fn unreadable_and_empty_pem_files_are_errors_naming_the_file() {
        let missing = PathBuf::from("/nonexistent/server.crt");
        let error = ServerTlsFiles {
            cert: missing.clone(),
            key: missing.clone(),
            client_ca: None,
        }
        .load()
        .expect_err("missing file");
        assert!(
            error.to_string().contains("/nonexistent/server.crt"),
            "{error}"
        );

        let garbage = scratch("garbage.pem", "not a certificate\n");
        let error = read_certificates(&garbage, "CA certificate").expect_err("no PEM");
        let text = error.to_string();
        assert!(
            text.contains("garbage.pem") && text.contains("CA certificate"),
            "{text}"
        );

        let error = read_private_key(&garbage, "client key").expect_err("no key");
        assert!(error.to_string().contains("garbage.pem"), "{error}");
    }

    #[test]
    fn a_certificate_and_key_load_with_and_without_a_client_ca() {
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca_cert = ca.self_signed(&ca_key).expect("self-signed");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("signs");
        let files = ServerTlsFiles {
            cert: scratch("server.crt", &cert.pem()),
            key: scratch("server.key", &key.serialize_pem()),
            client_ca: None,
        };
        let config = files.load().expect("loads");
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        let with_ca = ServerTlsFiles {
            client_ca: Some(scratch("ca.crt", &ca_cert.pem())),
            ..files
        };
        with_ca.load().expect("loads with a client CA");

        // A certificate given as the key is named.
        let swapped = ServerTlsFiles {
            key: with_ca.cert.clone(),
            ..with_ca
        };
        let error = swapped.load().expect_err("a certificate is not a key");
        assert!(error.to_string().contains("server.crt"), "{error}");
    }

    #[test]
    fn flags_must_come_in_pairs() {
        assert_eq!(
            ServerTlsFiles::from_flags(None, None, None).ok(),
            Some(None)
        );
        assert!(ServerTlsFiles::from_flags(Some("c".into()), None, None).is_err());
        assert!(ServerTlsFiles::from_flags(None, Some("k".into()), None).is_err());
        assert!(ServerTlsFiles::from_flags(None, None, Some("ca".into())).is_err());
        let client = ClientTlsFiles {
            cert: Some("c".into()),
            flag: "--safety-tls",
            ..ClientTlsFiles::default()
        };
        let error = client.load().expect_err("cert without key");
        assert!(
            error
                .to_string()
                .contains("--safety-tls-cert needs --safety-tls-key"),
            "{error}"
        );
    }

    /// A CA certificate (PEM) in a scratch file, for a client configuration.
    fn ca_file(name: &str) -> PathBuf {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed");
        scratch(name, &cert.pem())
    }

    /// A listener that accepts connections and keeps them open without a byte in either
    /// direction: a server that never completes the TLS handshake.
    async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn the_client_handshake_with_a_silent_server_times_out() {
        let (addr, server) = silent_server().await;
        let config = ClientTlsFiles {
            ca: Some(ca_file("silent-ca.crt")),
            flag: "--safety-tls",
            ..ClientTlsFiles::default()
        }
        .load()
        .expect("client configuration");
        let mut connector = TlsConnector::new(config);
        let uri: Uri = format!("https://localhost:{}", addr.port())
            .parse()
            .expect("uri");
        let connecting = tower::ServiceExt::oneshot(&mut connector, uri);
        // The guard is far longer than the handshake timeout: only a hang trips it.
        let error = match tokio::time::timeout(HANDSHAKE_TIMEOUT * 6, connecting)
            .await
            .expect("the handshake gives up instead of hanging")
        {
            Ok(_) => panic!("a silent server completed a handshake"),
            Err(error) => error,
        };
        let text = error.to_string();
        assert!(text.contains("TLS handshake"), "{text}");
        assert!(text.contains("timed out"), "{text}");
        server.abort();
    }

    #[tokio::test]
    async fn a_call_over_a_tls_channel_to_a_silent_server_fails_instead_of_hanging() {
        let (addr, server) = silent_server().await;
        let tls = ClientTlsFiles {
            ca: Some(ca_file("silent-channel-ca.crt")),
            flag: "--safety-tls",
            ..ClientTlsFiles::default()
        };
        // No timeouts on the endpoint: the handshake's own bound is what ends the call.
        let channel =
            channel(&format!("https://localhost:{}", addr.port()), &tls, |e| e).expect("channel");
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!(
                "https://localhost:{}/grpc.health.v1.Health/Check",
                addr.port()
            ))
            .header("content-type", "application/grpc")
            .body(tonic::body::Body::empty())
            .expect("request");
        let call = tower::ServiceExt::oneshot(channel, request);
        let result = tokio::time::timeout(HANDSHAKE_TIMEOUT * 6, call)
            .await
            .expect("the call fails instead of hanging");
        assert!(result.is_err(), "a silent server answered: {result:?}");
        server.abort();
    }

    #[tokio::test]
    async fn tls_options_with_a_plaintext_endpoint_are_refused() {
        let tls = ClientTlsFiles {
            ca: Some("ca.crt".into()),
            flag: "--rebalancer-tls",
            ..ClientTlsFiles::default()
        };
        let error = channel("http://127.0.0.1:1", &tls, |e| e).expect_err("plaintext");
        assert!(error.to_string().contains("--rebalancer-tls"), "{error}");
        channel("http://127.0.0.1:1", &ClientTlsFiles::default(), |e| e).expect("plaintext");
        assert!(channel("not a uri", &ClientTlsFiles::default(), |e| e).is_err());
    }
}
