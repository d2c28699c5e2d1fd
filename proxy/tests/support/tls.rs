//! TLS for the black-box tests: a test CA made with rcgen, leaf certificates it signs, a
//! directory laid out like a mounted `kubernetes.io/tls` Secret (its `..data` symlink swapped
//! on update, as the kubelet does), and clients that verify the proxy against the CA — over
//! a plain socket or behind a load balancer's PROXY header ([`Behind`]).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tidegate_proxy::config::{Config, TlsSection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;

use super::{DEADLINE, config};

/// The name the test certificates are for.
pub const HOST: &str = "tidegate.test";

/// A WebSocket over a verified TLS connection.
pub type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A certificate authority for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM.
#[derive(Clone)]
pub struct Leaf {
    /// The chain: the leaf, then the CA.
    pub chain_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
    /// The leaf in DER, to compare with what a client was served.
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("tidegate test CA {}", fastrand::u64(..)),
        );
        let key = KeyPair::generate().unwrap();
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA certificate as PEM (what a client trusts).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `hosts` (DNS names) signed by this CA.
    pub fn leaf(&self, hosts: &[&str]) -> Leaf {
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.issuer.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client config that trusts only this CA, offering ALPN `http/1.1`.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = tidegate_proxy::tls::provider();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A directory laid out like a mounted Secret: `tls.crt` and `tls.key` are symlinks into
/// `..data`, a symlink to a versioned directory that an update replaces whole.
pub struct SecretVolume {
    dir: tempfile::TempDir,
    version: usize,
}

impl SecretVolume {
    pub fn new(leaf: &Leaf) -> Self {
        let mut v = Self {
            dir: tempfile::tempdir().unwrap(),
            version: 0,
        };
        v.update(&leaf.chain_pem, &leaf.key_pem);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(Path::new("..data").join(name), v.dir.path().join(name))
                .unwrap();
        }
        v
    }

    /// Replaces both files at once, as the kubelet does.
    pub fn update(&mut self, chain_pem: &str, key_pem: &str) {
        self.version += 1;
        let data = self
            .dir
            .path()
            .join(format!("..2026_12_01_{}", self.version));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tls.crt"), chain_pem).unwrap();
        std::fs::write(data.join("tls.key"), key_pem).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }
}

/// A config whose `listen` speaks TLS with `volume`'s pair, cap 10 per backend.
pub fn tls_config(backends: &[std::net::SocketAddr], volume: &SecretVolume) -> Config {
    let mut c = config(backends, 10);
    c.tls = Some(TlsSection {
        cert_file: volume.cert(),
        key_file: volume.key(),
        certificates: Vec::new(),
        listen: None,
    });
    c
}

/// A TLS connection to `addr` with SNI `name`, verified against `config`'s roots.
pub async fn connect(
    addr: std::net::SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connect_over(tcp, name, config).await
}

/// The client's TLS handshake over `io` with SNI `name`, verified against `config`'s roots.
pub async fn connect_over<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<IO>> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(DEADLINE, TlsConnector::from(config).connect(name, io))
        .await
        .expect("TLS handshake timed out")
}

/// A TCP connection whose first write (the ClientHello) goes out in one write with `header`
/// in front of it, as a load balancer's PROXY header and the client's first bytes arrive in
/// one segment: the proxy's read of the header then takes the start of the ClientHello too.
pub struct Behind {
    tcp: TcpStream,
    header: Option<Vec<u8>>,
    pending: Vec<u8>,
}

impl Behind {
    pub async fn connect(addr: std::net::SocketAddr, header: Vec<u8>) -> Self {
        Self {
            tcp: TcpStream::connect(addr).await.unwrap(),
            header: Some(header),
            pending: Vec::new(),
        }
    }

    /// A connection that has written `header` on its own already.
    pub async fn after(addr: std::net::SocketAddr, header: &[u8]) -> Self {
        use tokio::io::AsyncWriteExt;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(header).await.unwrap();
        Self {
            tcp,
            header: None,
            pending: Vec::new(),
        }
    }

    /// Writes what the first write left unwritten.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Behind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Behind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(mut first) = this.header.take() {
            first.extend_from_slice(buf);
            this.pending = first;
            // One write for both; what it leaves goes out on the next write or flush.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// The leaf certificate the server presented on `stream`.
pub fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// A `wss://` WebSocket to `addr` with SNI `name`, and the leaf it was served.
pub async fn wss(
    addr: std::net::SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> (Wss, CertificateDer<'static>) {
    let stream = connect(addr, name, config).await.unwrap();
    let leaf = served(&stream);
    let url = format!("wss://{name}/chat");
    let (ws, resp) = tokio::time::timeout(DEADLINE, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("upgrade timed out")
        .unwrap();
    assert_eq!(resp.status(), 101);
    (ws, leaf)
}

/// Writes `request` over a verified TLS connection to `addr` and reads until `until` is seen or
/// the server closes.
pub async fn exchange(
    addr: std::net::SocketAddr,
    ca: &TestCa,
    request: &str,
    until: &str,
) -> String {
    let mut s = connect(addr, HOST, ca.client_config()).await.unwrap();
    exchange_over(&mut s, request, until).await
}

/// Writes `request` on `stream` and reads until `until` is seen or the server closes.
pub async fn exchange_over(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    request: &str,
    until: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(until) {
        match tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("no answer in time")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
