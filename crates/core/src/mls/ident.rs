//! MLS identity (credential + Ed25519 signature key) and key packages.

use openmls::prelude::tls_codec::{Deserialize as TlsDeserialize, Serialize as TlsSerialize};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::OpenMlsProvider;

use super::CIPHERSUITE;
use super::error::{MlsError, other};
use crate::identity::MemberId;

/// Our MLS identity: a basic credential carrying our address, and the Ed25519 key MLS
/// signs with (generated once, kept in the provider's storage).
pub struct MlsIdentity {
    member_id: MemberId,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

impl MlsIdentity {
    fn assemble(member_id: MemberId, signer: SignatureKeyPair) -> Self {
        let credential = CredentialWithKey {
            credential: BasicCredential::new(member_id.to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Self {
            member_id,
            signer,
            credential,
        }
    }

    /// Generates and stores a new signature key for `member_id`.
    pub fn create<P: OpenMlsProvider>(provider: &P, member_id: MemberId) -> Result<Self, MlsError> {
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(other)?;
        signer
            .store(provider.storage())
            .map_err(|e| MlsError::Storage(format!("{e:?}")))?;
        Ok(Self::assemble(member_id, signer))
    }

    /// Reloads the key whose public part is `public_key` (saved by the node).
    pub fn load<P: OpenMlsProvider>(
        provider: &P,
        member_id: MemberId,
        public_key: &[u8],
    ) -> Result<Self, MlsError> {
        let signer = SignatureKeyPair::read(
            provider.storage(),
            public_key,
            CIPHERSUITE.signature_algorithm(),
        )
        .ok_or_else(|| MlsError::Storage("MLS signature key not found in storage".into()))?;
        Ok(Self::assemble(member_id, signer))
    }

    /// The public signature key (what the node saves to reload the identity).
    pub fn public_key(&self) -> &[u8] {
        self.signer.public()
    }

    /// Our address.
    pub fn member_id(&self) -> MemberId {
        self.member_id
    }

    pub(crate) fn signer(&self) -> &SignatureKeyPair {
        &self.signer
    }

    pub(crate) fn credential(&self) -> &CredentialWithKey {
        &self.credential
    }
}

/// A fresh single-use key package (TLS bytes); its private keys stay in storage.
pub fn generate_key_package<P: OpenMlsProvider>(
    provider: &P,
    id: &MlsIdentity,
) -> Result<Vec<u8>, MlsError> {
    let bundle = KeyPackage::builder()
        .build(CIPHERSUITE, provider, &id.signer, id.credential.clone())
        .map_err(other)?;
    bundle.key_package().tls_serialize_detached().map_err(other)
}

/// What a valid key package says.
#[derive(Debug, Clone)]
pub struct KeyPackageInfo {
    /// Address in its credential.
    pub member_id: MemberId,
    /// Its hash reference.
    pub hash_ref: Vec<u8>,
}

/// Parses and validates a key package (signature, suite, version, lifetime).
pub fn validate_key_package<P: OpenMlsProvider>(
    provider: &P,
    bytes: &[u8],
) -> Result<KeyPackageInfo, MlsError> {
    let kp = parse_key_package(provider, bytes)?;
    let member_id = credential_member(kp.leaf_node().credential())?;
    let hash_ref = kp
        .hash_ref(provider.crypto())
        .map_err(other)?
        .as_slice()
        .to_vec();
    Ok(KeyPackageInfo {
        member_id,
        hash_ref,
    })
}

pub(crate) fn parse_key_package<P: OpenMlsProvider>(
    provider: &P,
    bytes: &[u8],
) -> Result<KeyPackage, MlsError> {
    let kp_in = KeyPackageIn::tls_deserialize_exact(bytes)
        .map_err(|e| MlsError::InvalidKeyPackage(e.to_string()))?;
    let kp = kp_in
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .map_err(|e| MlsError::InvalidKeyPackage(format!("{e:?}")))?;
    if kp.ciphersuite() != CIPHERSUITE {
        return Err(MlsError::InvalidKeyPackage(
            "unsupported ciphersuite".into(),
        ));
    }
    Ok(kp)
}

/// The leaf encryption key a key package would put in the tree, if it parses.
pub(crate) fn key_package_leaf_key<P: OpenMlsProvider>(
    provider: &P,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    use tls_codec::Serialize;
    let kp = parse_key_package(provider, bytes).ok()?;
    kp.leaf_node()
        .encryption_key()
        .tls_serialize_detached()
        .ok()
}

/// The leaf encryption key a key package claims, read from its encoding without
/// validating it (no signature check): `version`, `cipher_suite`, `init_key<V>`, then the
/// leaf node's `encryption_key<V>` (RFC 9420, sections 10 and 7.2). Cheap enough to
/// compare one key package with every pending add's; only use it on key packages whose
/// announcements were verified, or to compare claims.
pub(crate) fn claimed_leaf_key(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut rest = bytes.get(4..)?;
    let _init_key = VLBytes::tls_deserialize(&mut rest).ok()?;
    let key = VLBytes::tls_deserialize(&mut rest).ok()?;
    Some(key.as_slice().to_vec())
}

/// The address in a basic credential.
pub(crate) fn credential_member(c: &Credential) -> Result<MemberId, MlsError> {
    let basic = BasicCredential::try_from(c.clone()).map_err(|_| MlsError::BadCredential)?;
    MemberId::from_slice(basic.identity()).map_err(|_| MlsError::BadCredential)
}
