//! TLS for the black-box tests: a test CA made with rcgen, leaf certificates it signs, a
//! directory laid out like a mounted `kubernetes.io/tls` Secret (its `..data` symlink swapped
//! on update, as the kubelet does), and clients that verify the proxy against the CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;

use super::DEADLINE;

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

/// A TLS connection to `addr` with SNI `name`, verified against `config`'s roots.
pub async fn connect(
    addr: std::net::SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(DEADLINE, TlsConnector::from(config).connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
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
