//! The cluster's own public-key infrastructure: a CA that the coordinator creates (or is given),
//! certificates it signs for itself and for each worker, the join token, and the TLS settings
//! of every QUIC connection, which is mutually authenticated under that CA. There is no
//! plaintext mode.
//!
//! A worker joins with a token `weir1-<CA fingerprint>-<secret>`: it trusts the coordinator
//! only if the CA that signed the coordinator's certificate has that fingerprint (so the token
//! alone, copied from the coordinator, pins the cluster), and it proves itself with the secret
//! to receive a certificate signed by the CA for a key that never leaves it (it sends a
//! certificate signing request). From then on it presents that certificate on every connection.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use ring::rand::SecureRandom;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// The application protocol every weir QUIC connection negotiates.
pub const ALPN: &[u8] = b"weir/1";

/// The name in the coordinator's certificate, which workers check.
pub const COORDINATOR_NAME: &str = "weir-coordinator";

/// A certificate or key that cannot be made, read or used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(pub String);

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> PkiError + '_ {
    move |e| PkiError(format!("{what}: {e}"))
}

/// The cluster's certificate authority.
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl ClusterCa {
    /// A new CA with a new key.
    pub fn generate() -> Result<Self, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err("CA"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "weir cluster CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(err("CA key"))?;
        let cert = params.self_signed(&key).map_err(err("CA certificate"))?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA given as its certificate and key, in PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(err("the CA's key"))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(err("the CA's certificate"))?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(err("the CA's certificate"))?;
        Ok(ClusterCa {
            issuer,
            cert_pem: cert_pem.to_string(),
            cert_der,
        })
    }

    /// The CA's certificate, PEM: what every process trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's key, PEM (to be kept where only the coordinator reads it).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The SHA-256 of the CA's certificate, hex: what a join token pins.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    fn leaf_params(name: &str) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::new(vec![name.to_string()]).map_err(err(name))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }

    /// A new key and a certificate for `name`, signed by the CA (the coordinator's own).
    pub fn issue(&self, name: &str) -> Result<Identity, PkiError> {
        let key = KeyPair::generate().map_err(err("key"))?;
        let cert = Self::leaf_params(name)?
            .signed_by(&key, &self.issuer)
            .map_err(err(name))?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
        })
    }

    /// A certificate for `name` for the key of a certificate signing request, PEM. What the
    /// request asks for besides its key is ignored: the CA decides the name and the uses.
    pub fn sign_request(&self, csr_pem: &str, name: &str) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(err("the certificate signing request"))?;
        let cert = Self::leaf_params(name)?
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(err(name))?;
        Ok(cert.pem())
    }
}

/// The SHA-256 of a certificate, hex.
fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new key and a certificate signing request for it (a worker's, before it joins): the key,
/// PEM, stays with the worker; the request goes to the coordinator.
pub fn request(name: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(err("key"))?;
    // Only the key and the name: the CA decides the rest.
    let csr = CertificateParams::new(vec![name.to_string()])
        .map_err(err(name))?
        .serialize_request(&key)
        .map_err(err("certificate signing request"))?;
    Ok((
        key.serialize_pem(),
        csr.pem().map_err(err("certificate signing request"))?,
    ))
}

/// A process's identity in the cluster: its certificate and key, and the CA it trusts.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl Identity {
    /// Its certificate, then the CA's: a worker joining finds the CA it pins in the chain.
    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, PkiError> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .chain(CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err("certificate"))
    }

    /// The common name of its certificate.
    pub fn name(&self) -> Result<String, PkiError> {
        let chain = self.chain()?;
        let leaf = chain
            .first()
            .ok_or_else(|| PkiError("no certificate".into()))?;
        common_name(leaf).ok_or_else(|| PkiError("a certificate without a name".into()))
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, PkiError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(err("key"))
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, PkiError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(err("CA certificate"))?)
                .map_err(err("CA certificate"))?;
        }
        Ok(Arc::new(roots))
    }
}

/// Every connection's transport settings: a peer silent for 5 s (dead, hung, cut off) ends
/// the connection; keep-alives every second keep a quiet but live one open.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(std::time::Duration::from_secs(5)).expect("5 s fits"),
    ));
    t.keep_alive_interval(Some(std::time::Duration::from_secs(1)));
    Arc::new(t)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS settings of a process accepting connections: it presents `identity`, and requires
/// the peer's certificate signed by the cluster's CA unless `joining` (the coordinator's join
/// endpoint, where a worker without a certificate yet presents its token instead).
pub fn server_config(identity: &Identity, joining: bool) -> Result<quinn::ServerConfig, PkiError> {
    let mut verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(identity.roots()?, provider());
    if joining {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier.build().map_err(err("client verifier"))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(err("TLS"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain()?, identity.key()?)
        .map_err(err("certificate"))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(err("QUIC"))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// The TLS settings of a process connecting to another: it trusts the cluster's CA and
/// presents `identity`'s certificate.
pub fn client_config(identity: &Identity) -> Result<quinn::ClientConfig, PkiError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(err("TLS"))?
        .with_root_certificates(identity.roots()?)
        .with_client_auth_cert(identity.chain()?, identity.key()?)
        .map_err(err("certificate"))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(err("QUIC"))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// The TLS settings of a worker joining: it has no certificate yet, and trusts the server
/// whose certificate is signed by the CA with the token's fingerprint (the server sends that
/// CA's certificate in its chain).
pub fn join_config(token: &JoinToken) -> Result<quinn::ClientConfig, PkiError> {
    let verifier = Arc::new(PinnedCa {
        fingerprint: token.ca_fingerprint.clone(),
        provider: provider(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(err("TLS"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(err("QUIC"))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// Verifies a server's certificate against the CA of a given fingerprint, found in the chain
/// the server sent: the usual WebPKI checks, with that CA as the only root.
#[derive(Debug)]
struct PinnedCa {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let general = |e: &dyn std::fmt::Display| rustls::Error::General(e.to_string());
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.fingerprint)
            .ok_or_else(|| {
                general(&"the server's CA is not the one the join token names (another cluster?)")
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| general(&e))?
        .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The common name in a certificate's subject (a worker's certificate names the worker).
pub fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The peer's certificate chain on a QUIC connection, if it presented one.
pub fn peer_chain(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|b| *b)
}

/// A join token: the fingerprint of the CA a worker is to trust, and the secret it proves
/// itself with.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_fingerprint: String,
    secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JoinToken({}, <secret>)", self.ca_fingerprint)
    }
}

impl JoinToken {
    /// A new token for the cluster of `ca`, with a random secret.
    pub fn generate(ca: &ClusterCa) -> Result<Self, PkiError> {
        let mut secret = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| PkiError("no randomness for the join token".into()))?;
        Ok(JoinToken {
            ca_fingerprint: ca.fingerprint(),
            secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    /// Reads a token as `weir1-<fingerprint>-<secret>` prints it.
    pub fn parse(text: &str) -> Result<Self, PkiError> {
        let bad = || {
            PkiError(
                "not a join token (expected weir1-<64 hex digits>-<64 hex digits>, as the \
                 coordinator prints it and writes it to DATA_DIR/join-token)"
                    .into(),
            )
        };
        let mut parts = text.trim().split('-');
        let (Some("weir1"), Some(fp), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(fp) || !hex(secret) {
            return Err(bad());
        }
        Ok(JoinToken {
            ca_fingerprint: fp.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
        })
    }

    /// Whether `presented` is this token, compared in constant time.
    pub fn accepts(&self, presented: &JoinToken) -> bool {
        let (a, b) = (self.to_string(), presented.to_string());
        a.len() == b.len()
            && a.bytes()
                .zip(b.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "weir1-{}-{}", self.ca_fingerprint, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn a_ca_signs_requests_and_survives_its_pem() {
        let ca = ClusterCa::generate().unwrap();
        let again = ClusterCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
        let (_key, csr) = request("worker-a").unwrap();
        let cert = again.sign_request(&csr, "worker-a").unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(again.sign_request("not a request", "w").is_err());
        assert!(ClusterCa::from_pem("junk", &ca.key_pem()).is_err());
    }

    #[test]
    fn join_tokens_parse_print_and_compare() {
        let ca = ClusterCa::generate().unwrap();
        let t = JoinToken::generate(&ca).unwrap();
        let text = t.to_string();
        let parsed = JoinToken::parse(&format!("  {text}\n")).unwrap();
        assert!(t.accepts(&parsed));
        assert_eq!(parsed.ca_fingerprint, ca.fingerprint());
        let other = JoinToken::generate(&ca).unwrap();
        assert!(!t.accepts(&other));
        for bad in [
            "",
            "weir1",
            "weir2-aa-bb",
            &text[..text.len() - 1],
            &format!("{text}-x"),
        ] {
            assert!(JoinToken::parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            !format!("{t:?}").contains(&text[70..]),
            "Debug hides the secret"
        );
    }

    /// Connects `client` to a server with `server` over QUIC on loopback; the server reads a
    /// stream's bytes back to the client. Returns what the client got, or why it failed.
    async fn exchange(
        server: quinn::ServerConfig,
        client: quinn::ClientConfig,
    ) -> Result<Vec<u8>, String> {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let endpoint = quinn::Endpoint::server(server, addr).unwrap();
        let at = endpoint.local_addr().unwrap();
        let serve = tokio::spawn(async move {
            let conn = endpoint.accept().await?.await.ok()?;
            let (mut send, mut recv) = conn.accept_bi().await.ok()?;
            let got = recv.read_to_end(1024).await.ok()?;
            send.write_all(&got).await.ok()?;
            send.finish().ok()?;
            conn.closed().await;
            Some(())
        });
        let mut c = quinn::Endpoint::client(addr).unwrap();
        c.set_default_client_config(client);
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let conn = c
                .connect(at, COORDINATOR_NAME)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(b"hello").await.map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())?;
            let got = recv.read_to_end(1024).await.map_err(|e| e.to_string())?;
            conn.close(0u32.into(), b"done");
            Ok(got)
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), serve).await;
        result
    }

    #[tokio::test]
    async fn quic_connections_are_mutually_authenticated_under_the_cluster_ca() {
        let ca = ClusterCa::generate().unwrap();
        let coordinator = ca.issue(COORDINATOR_NAME).unwrap();
        let (key_pem, csr) = request("worker-1").unwrap();
        let worker = Identity {
            cert_pem: ca.sign_request(&csr, "worker-1").unwrap(),
            key_pem,
            ca_pem: ca.cert_pem().to_string(),
        };
        let server = || server_config(&coordinator, false).unwrap();
        assert_eq!(
            exchange(server(), client_config(&worker).unwrap())
                .await
                .unwrap(),
            b"hello"
        );
        // A worker with a certificate of another CA is refused, and so is a server of
        // another CA.
        let foreign = ClusterCa::generate().unwrap();
        let mut stranger = foreign.issue("worker-1").unwrap();
        stranger.ca_pem = ca.cert_pem().to_string();
        assert!(
            exchange(server(), client_config(&stranger).unwrap())
                .await
                .is_err()
        );
        // Joining: no certificate yet, the coordinator trusted by the token's fingerprint, on
        // the join endpoint (no client certificate required); a token of another cluster
        // does not trust it.
        let token = JoinToken::generate(&ca).unwrap();
        assert_eq!(
            exchange(
                server_config(&coordinator, true).unwrap(),
                join_config(&token).unwrap()
            )
            .await
            .unwrap(),
            b"hello"
        );
        let other = JoinToken::generate(&foreign).unwrap();
        assert!(
            exchange(
                server_config(&coordinator, true).unwrap(),
                join_config(&other).unwrap()
            )
            .await
            .is_err()
        );
        // Without the join endpoint's leniency, a client without a certificate is refused.
        assert!(
            exchange(server(), join_config(&token).unwrap())
                .await
                .is_err()
        );
        assert_eq!(worker.name().unwrap(), "worker-1");
        let impostor = foreign.issue(COORDINATOR_NAME).unwrap();
        assert!(
            exchange(
                server_config(&impostor, false).unwrap(),
                client_config(&worker).unwrap()
            )
            .await
            .is_err()
        );
    }
}
