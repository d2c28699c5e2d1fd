//! TLS termination with rustls: `wss://` and `https://` at the edge.
//!
//! A layer under the data plane rather than a part of it: it turns an accepted TCP socket into
//! a plaintext stream (or refuses it), and the data plane carries on over that stream as over
//! TCP. It also owns the one crypto provider of the process, which the Kubernetes client uses
//! too.
//!
//! - [`pair`]: a certificate and its key from their PEM files, checked (parses, key matches,
//!   covers its hosts), with its expiry ([`expiry`]).
//! - [`store`]: the certificates in force as rustls's resolver: SNI selects, with a default.
//! - [`rotation`]: the files watched by content; a valid change is swapped in for new
//!   handshakes, an invalid one keeps the old pair and is counted.
//! - [`accept`]: the first byte and the handshake, before `request_header_timeout`; failures
//!   are closed and counted, never routed.
//! - [`stream`]: the terminated stream as pingora's transport for the plain-HTTP path.
//!
//! Why aws-lc-rs and not ring (which the Kubernetes client alone would pull in): on this
//! project's machines it signs RSA-2048 handshakes in about two thirds of ring's instructions
//! and ECDSA P-256 ones in 10–25 % fewer, before counting its AVX-512 code (docs/architecture.md,
//! "TLS at the edge").

pub mod accept;
mod expiry;
pub mod metrics;
pub mod pair;
pub mod rotation;
pub mod store;
pub mod stream;

use std::sync::{Arc, OnceLock};

use prometheus::Registry;
use rustls::crypto::CryptoProvider;
use rustls::{ProtocolVersion, ServerConfig};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::TlsSection;
pub use accept::Refusal;
pub use metrics::Metrics;
pub use pair::Pair;
pub use rotation::Rotation;
pub use store::Store;

/// A terminated TLS connection: plaintext both ways over the client's TCP socket.
pub type Stream = tokio_rustls::server::TlsStream<TcpStream>;

/// The only application protocol served over TLS (no h2: WebSockets here are HTTP/1.1).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate pair is missing, broken or mismatched.
    #[error("tls certificate `{name}`: {source}")]
    Certificate {
        /// `default`, or the entry's name.
        name: String,
        /// What is wrong, with the file.
        #[source]
        source: pair::Error,
    },
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// A metric could not be registered.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::Error),
}

/// The crypto provider of the whole process (aws-lc-rs), built once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}

/// Makes [`provider`] the process default, for code that builds rustls configs without naming
/// one (the Kubernetes client). With two providers compiled in (kube's ring, ours) rustls has no
/// default of its own. Idempotent.
pub fn install_provider() {
    let _ = CryptoProvider::install_default((*provider()).clone());
}

/// The pairs of a section with their names, in the order of [`TlsSection::pairs`].
pub(crate) fn sources(section: &TlsSection) -> Vec<(&str, pair::Source<'_>)> {
    let default = (
        crate::config::DEFAULT_CERTIFICATE_NAME,
        pair::Source {
            cert: &section.cert_file,
            key: &section.key_file,
            hosts: &[],
        },
    );
    let sni = section.certificates.iter().map(|c| {
        let source = pair::Source {
            cert: &c.cert_file,
            key: &c.key_file,
            hosts: &c.hosts,
        };
        (c.name(), source)
    });
    std::iter::once(default).chain(sni).collect()
}

/// Loads and checks every pair of `section`; the first failure names its pair and file.
pub fn load(section: &TlsSection) -> Result<Vec<Pair>, Error> {
    let provider = provider();
    sources(section)
        .into_iter()
        .map(|(name, source)| {
            source.load(&provider).map_err(|source| Error::Certificate {
                name: name.to_owned(),
                source,
            })
        })
        .collect()
}

/// `tls1_2` / `tls1_3`, the labels of versions.
pub fn version_label(version: Option<ProtocolVersion>) -> &'static str {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "tls1_3",
        Some(ProtocolVersion::TLSv1_2) => "tls1_2",
        _ => "other",
    }
}

/// TLS termination for a listener: the handshake over the certificate store, and its counts.
pub struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
    store: Arc<Store>,
    metrics: Metrics,
}

impl Acceptor {
    /// Loads `section`'s pairs and builds the acceptor and the rotation that keeps its
    /// certificates current; the TLS metrics go into `registry`.
    pub fn new(section: &TlsSection, registry: &Registry) -> Result<(Self, Rotation), Error> {
        let pairs = load(section)?;
        let metrics = Metrics::register(registry)?;
        for ((name, _), pair) in sources(section).iter().zip(&pairs) {
            metrics.set_expiry(name, pair.not_after);
        }
        let keys: Vec<_> = pairs.iter().map(|p| Arc::clone(&p.certified)).collect();
        let selection = store::Selection::new(section, &keys)
            .ok_or(rustls::Error::General("no default certificate".into()))?;
        let store = Arc::new(Store::new(selection));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&store) as Arc<dyn rustls::server::ResolvesServerCert>);
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        let rotation = Rotation::new(section.clone(), Arc::clone(&store), pairs, metrics.clone());
        let acceptor = Self {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            store,
            metrics,
        };
        Ok((acceptor, rotation))
    }

    /// The handshake on an accepted socket whose first bytes `already` were read off it (what
    /// followed a PROXY header; empty without one), to be done by `deadline`; once a failure
    /// has been counted, the socket, closed when the caller drops it.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        already: Vec<u8>,
        deadline: Instant,
    ) -> Result<Stream, accept::Unclosed> {
        match accept::handshake(&self.inner, tcp, already, deadline).await {
            Ok(stream) => {
                let version = version_label(stream.get_ref().1.protocol_version());
                self.metrics.handshakes.with_label_values(&[version]).inc();
                Ok(stream)
            }
            Err((refusal, unclosed)) => {
                tracing::debug!(reason = refusal.metric_label(), "tls handshake refused");
                let reason = [refusal.metric_label()];
                self.metrics
                    .handshake_errors
                    .with_label_values(&reason)
                    .inc();
                Err(unclosed)
            }
        }
    }

    /// The certificates in force.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// What TLS counts.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
