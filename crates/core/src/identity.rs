//! Member identity: a 20-byte Ethereum address, and EIP-191 signatures made and checked
//! with `alloy`. Every protocol object that names a member (votes, proposals, key package
//! announcements, steward lists, scores) uses [`MemberId`].

use std::fmt;

use alloy_primitives::{Address, Signature};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

/// Errors from identity parsing, signing and verification.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// Not 20 bytes.
    #[error("a member id is 20 bytes, got {0}")]
    BadLength(usize),
    /// Not a 0x-prefixed (or bare) 40-digit hex address.
    #[error("not an Ethereum address: {0:?}")]
    BadAddress(String),
    /// The signature is not 65 bytes or is malformed.
    #[error("malformed signature: {0}")]
    BadSignature(String),
    /// The signature is well-formed but was made by another key.
    #[error("signature was made by {actual}, expected {expected}")]
    WrongSigner {
        /// The address the message claims.
        expected: MemberId,
        /// The address recovered from the signature.
        actual: MemberId,
    },
    /// The private key could not sign.
    #[error("signing failed: {0}")]
    Signing(String),
    /// Invalid secret key bytes.
    #[error("invalid secp256k1 secret key")]
    BadSecretKey,
}

/// A member's 20-byte Ethereum address. Displayed EIP-55 checksummed; serialized as a
/// lower-case `0x…` string (so it can key JSON maps in saved state).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub [u8; 20]);

impl Serialize for MemberId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(self.0)))
    }
}

impl<'de> Deserialize<'de> for MemberId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl MemberId {
    /// Parses raw bytes (must be exactly 20).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr: [u8; 20] = bytes
            .try_into()
            .map_err(|_| IdentityError::BadLength(bytes.len()))?;
        Ok(Self(arr))
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The raw bytes as a vector (wire form).
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// EIP-55 checksummed hex with `0x`.
    pub fn to_checksum(&self) -> String {
        Address::from(self.0).to_checksum(None)
    }
}

impl std::str::FromStr for MemberId {
    type Err = IdentityError;
    /// Accepts `0x`-prefixed or bare hex, any case (the checksum is not enforced, so users
    /// can paste lower-case addresses).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let h = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        if h.len() != 40 {
            return Err(IdentityError::BadAddress(s.to_string()));
        }
        let bytes = hex::decode(h).map_err(|_| IdentityError::BadAddress(s.to_string()))?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum())
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short form keeps simulator logs readable.
        write!(f, "0x{}…", hex::encode(&self.0[..3]))
    }
}

impl From<Address> for MemberId {
    fn from(a: Address) -> Self {
        Self(a.into_array())
    }
}

/// A member's Ethereum key: signs EIP-191 personal messages.
#[derive(Clone)]
pub struct EthSigner {
    inner: PrivateKeySigner,
    id: MemberId,
}

impl fmt::Debug for EthSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EthSigner({})", self.id)
    }
}

impl EthSigner {
    /// Wraps an alloy signer.
    pub fn new(inner: PrivateKeySigner) -> Self {
        let id = MemberId::from(inner.address());
        Self { inner, id }
    }

    /// A fresh key from the given RNG (the simulator passes a seeded one).
    pub fn random_with<R: rand::Rng + rand::CryptoRng>(rng: &mut R) -> Self {
        Self::new(PrivateKeySigner::random_with(rng))
    }

    /// From 32 secret key bytes.
    pub fn from_secret(bytes: &[u8]) -> Result<Self, IdentityError> {
        PrivateKeySigner::from_slice(bytes)
            .map(Self::new)
            .map_err(|_| IdentityError::BadSecretKey)
    }

    /// The 32 secret key bytes (for the key file).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.inner.to_bytes().0
    }

    /// The address this key signs as.
    pub fn member_id(&self) -> MemberId {
        self.id
    }

    /// The alloy signer, for callers that need it (keystore export).
    pub fn alloy(&self) -> &PrivateKeySigner {
        &self.inner
    }

    /// EIP-191 personal-message signature, 65 bytes r‖s‖v.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, IdentityError> {
        self.inner
            .sign_message_sync(msg)
            .map(|s| s.as_bytes().to_vec())
            .map_err(|e| IdentityError::Signing(e.to_string()))
    }
}

thread_local! {
    static RECOVERIES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many signature recoveries (the costly step of checking a signature) this thread
/// has run. Tests and benchmarks count signature work with it: the simulator runs every
/// member on one thread.
pub fn recoveries_on_this_thread() -> u64 {
    RECOVERIES.with(|c| c.get())
}

/// Recovers the signer of an EIP-191 signature over `msg`.
pub fn recover(msg: &[u8], signature: &[u8]) -> Result<MemberId, IdentityError> {
    RECOVERIES.with(|c| c.set(c.get().saturating_add(1)));
    if signature.len() != 65 {
        return Err(IdentityError::BadSignature(format!(
            "expected 65 bytes, got {}",
            signature.len()
        )));
    }
    let sig =
        Signature::from_raw(signature).map_err(|e| IdentityError::BadSignature(e.to_string()))?;
    sig.recover_address_from_msg(msg)
        .map(MemberId::from)
        .map_err(|e| IdentityError::BadSignature(e.to_string()))
}

/// Checks that `signature` over `msg` was made by `expected`.
pub fn verify(msg: &[u8], signature: &[u8], expected: &MemberId) -> Result<(), IdentityError> {
    let actual = recover(msg, signature)?;
    if &actual == expected {
        Ok(())
    } else {
        Err(IdentityError::WrongSigner {
            expected: *expected,
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sign_and_recover_round_trip() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let a = EthSigner::random_with(&mut rng);
        let b = EthSigner::random_with(&mut rng);
        let sig = a.sign(b"hello").unwrap();
        assert_eq!(sig.len(), 65);
        assert_eq!(recover(b"hello", &sig).unwrap(), a.member_id());
        verify(b"hello", &sig, &a.member_id()).unwrap();
        assert!(matches!(
            verify(b"hello", &sig, &b.member_id()),
            Err(IdentityError::WrongSigner { .. })
        ));
        assert!(verify(b"hellO", &sig, &a.member_id()).is_err());
        assert!(matches!(
            recover(b"x", &sig[..64]),
            Err(IdentityError::BadSignature(_))
        ));
    }

    #[test]
    fn known_key_gives_known_address() {
        // Hardhat/anvil account #0: a public test vector for secp256k1 -> address.
        let k = hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
            .unwrap();
        let s = EthSigner::from_secret(&k).unwrap();
        assert_eq!(
            s.member_id().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
    }

    #[test]
    fn parse_addresses() {
        let id: MemberId = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
            .parse()
            .unwrap();
        assert_eq!(id.to_string(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        assert!("0x1234".parse::<MemberId>().is_err());
        assert!("zz".repeat(20).parse::<MemberId>().is_err());
    }
}
