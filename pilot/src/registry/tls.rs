//! TLS for the registry (`spec/registry.md` §3.2): the server side, the pinned client side, and
//! a self-signed identity that survives restarts.
//!
//! Clients pin the SHA-256 of the server's leaf certificate (lowercase hex), as Go daemons do;
//! chain and name are not checked. The reference makes a new certificate on every start, which
//! breaks every pinned daemon; [`TlsIdentity::load_or_generate`] keeps it in the
//! registry's storage instead. TLS draws randomness from the operating system inside rustls, so
//! it is for real runs, not for the simulator.

use crate::net::{Rng, Storage, StorageError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand_core::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime,
};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Blob name of the generated identity.
pub const IDENTITY_BLOB: &str = "registry-tls.json";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation or parsing failed.
    #[error("TLS certificate: {0}")]
    Certificate(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The stored identity could not be read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A certificate and its private key (PKCS#8), both DER.
#[derive(Clone, Serialize, Deserialize)]
pub struct TlsIdentity {
    cert: String,
    key: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a certificate's DER bytes, lowercase hex: the pin format of §3.2.
pub fn fingerprint(cert_der: &[u8]) -> String {
    Sha256::digest(cert_der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsIdentity {
    /// An identity from PEM files (operator-supplied certificate and PKCS#8 key).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsIdentity, TlsError> {
        let cert = CertificateDer::from_pem_slice(cert_pem)
            .map_err(|e| TlsError::Certificate(format!("certificate PEM: {e}")))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Certificate(format!("key PEM (PKCS#8 expected): {e}")))?;
        Ok(TlsIdentity {
            cert: STANDARD.encode(cert.as_ref()),
            key: STANDARD.encode(key.secret_pkcs8_der()),
        })
    }

    /// A new self-signed identity as §3.2 describes: ECDSA P-256, subject O=`Pilot Protocol`,
    /// valid from `now_unix_secs` for 365 days, SANs `localhost`, `127.0.0.1`, `::1`, a random
    /// 128-bit serial from `rng`.
    pub fn generate(rng: &mut Rng, now_unix_secs: u64) -> Result<TlsIdentity, TlsError> {
        let err = |e: rcgen::Error| TlsError::Certificate(e.to_string());
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(err)?;
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        params.subject_alt_names.push(rcgen::SanType::IpAddress(
            std::net::Ipv6Addr::LOCALHOST.into(),
        ));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Pilot Protocol");
        let ymd = |secs: u64| {
            let (y, m, d) = super::rfc3339::ymd(secs * 1000);
            rcgen::date_time_ymd(y as i32, m as u8, d as u8)
        };
        params.not_before = ymd(now_unix_secs);
        params.not_after = ymd(now_unix_secs + 365 * 86_400);
        let mut serial = [0u8; 16];
        rng.fill_bytes(&mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(TlsIdentity {
            cert: STANDARD.encode(cert.der().as_ref()),
            key: STANDARD.encode(key.serialize_der()),
        })
    }

    /// The identity kept in `storage`, or a new one that is stored for the next start (so the
    /// fingerprint daemons pinned stays valid).
    pub fn load_or_generate<S: Storage>(
        storage: &S,
        rng: &mut Rng,
        now_unix_secs: u64,
    ) -> Result<TlsIdentity, TlsError> {
        if let Some(bytes) = storage.read(IDENTITY_BLOB)? {
            return serde_json::from_slice(&bytes).map_err(|e| {
                TlsError::Certificate(format!("{IDENTITY_BLOB} is damaged (left untouched): {e}"))
            });
        }
        let id = Self::generate(rng, now_unix_secs)?;
        let bytes = serde_json::to_vec(&id).expect("identity serialises");
        storage.replace(IDENTITY_BLOB, &bytes)?;
        Ok(id)
    }

    fn cert_der(&self) -> Result<Vec<u8>, TlsError> {
        STANDARD
            .decode(&self.cert)
            .map_err(|e| TlsError::Certificate(e.to_string()))
    }

    /// The pin clients configure: SHA-256 of the certificate, lowercase hex.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der().unwrap_or_default())
    }

    /// A TLS acceptor serving this identity.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let key = STANDARD
            .decode(&self.key)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der()?)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// A TLS connector that accepts exactly the server whose leaf certificate has SHA-256 `pin`
/// (lowercase hex).
pub fn pinned_connector(pin: &str) -> Result<TlsConnector, TlsError> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            pin: pin.to_ascii_lowercase(),
            provider,
        }))
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The server name sent in the handshake (the pin decides, not the name).
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid DNS name")
}

#[derive(Debug)]
struct Pinned {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity.as_ref()) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "registry certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{seeded_rng, MemStorage};

    #[test]
    fn generated_identity_is_kept_across_restarts() {
        let storage = MemStorage::new();
        let mut rng = seeded_rng(1);
        let a = TlsIdentity::load_or_generate(&storage, &mut rng, 1_735_689_600).unwrap();
        let b = TlsIdentity::load_or_generate(&storage, &mut rng, 1_735_689_600).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        assert!(a.acceptor().is_ok());
        storage.replace(IDENTITY_BLOB, b"junk").unwrap();
        assert!(TlsIdentity::load_or_generate(&storage, &mut rng, 0).is_err());
    }
}
