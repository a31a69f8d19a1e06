//! Application messages (encrypted to the epoch, readable for [`PAST_EPOCHS`] more) and
//! data sealed with a key exported from the epoch.

use openmls::prelude::tls_codec::Serialize as TlsSerialize;
use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;

use super::{MlsConversation, PAST_EPOCHS, protocol_message};
use crate::identity::MemberId;
use crate::mls::CIPHERSUITE;
use crate::mls::error::{DecryptError, MlsError, other};
use crate::mls::ident::{MlsIdentity, credential_member};

/// An opened application message.
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// MLS-authenticated sender.
    pub sender: MemberId,
    /// Plaintext.
    pub plaintext: Vec<u8>,
    /// The epoch it was sent in: ours, or one of the last [`PAST_EPOCHS`].
    pub epoch: u64,
}

impl MlsConversation {
    /// Encrypts an application message.
    pub fn encrypt<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        id: &MlsIdentity,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, MlsError> {
        let out = self
            .group
            .create_message(provider, id.signer(), plaintext)
            .map_err(|e| match e {
                CreateMessageError::GroupStateError(MlsGroupStateError::PendingProposal) => {
                    MlsError::PendingProposals
                }
                CreateMessageError::GroupStateError(MlsGroupStateError::UseAfterEviction) => {
                    MlsError::NotAMember
                }
                e => MlsError::Processing(format!("{e:?}")),
            })?;
        out.tls_serialize_detached().map_err(other)
    }

    /// Opens an application message of the current epoch or of one of the last
    /// [`PAST_EPOCHS`]. The sender is the member who held the sending leaf *in the
    /// message's epoch* (a leaf may have changed hands since).
    pub fn decrypt<P: OpenMlsProvider>(
        &mut self,
        provider: &P,
        bytes: &[u8],
    ) -> Result<Decrypted, DecryptError> {
        let pm = protocol_message(bytes).map_err(DecryptError::Malformed)?;
        if pm.group_id() != self.group.group_id() {
            return Err(DecryptError::WrongGroup);
        }
        let (message_epoch, our_epoch) = (pm.epoch().as_u64(), self.epoch());
        if message_epoch > our_epoch {
            return Err(DecryptError::WrongEpoch {
                message_epoch,
                our_epoch,
            });
        }
        if our_epoch - message_epoch > PAST_EPOCHS {
            return Err(DecryptError::Expired {
                message_epoch,
                our_epoch,
            });
        }
        if pm.content_type() != ContentType::Application {
            return Err(DecryptError::NotApplication);
        }
        // openmls 0.9 recognises an echo of our own ciphertext and returns it as
        // `OwnPrivateMessage` (sender = our leaf) without the plaintext.
        let processed = self
            .group
            .process_message(provider, pm)
            .map_err(|e| DecryptError::Crypto(format!("{e:?}")))?;
        if !matches!(processed.sender(), Sender::Member(_)) {
            return Err(DecryptError::Crypto("sender is not a member".into()));
        }
        let sender = credential_member(processed.credential())
            .map_err(|e| DecryptError::Crypto(e.to_string()))?;
        if self.own_member().is_some_and(|me| me == sender) {
            return Err(DecryptError::OwnMessage);
        }
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(m) => Ok(Decrypted {
                sender,
                plaintext: m.into_bytes(),
                epoch: message_epoch,
            }),
            ProcessedMessageContent::OwnPrivateMessage => Err(DecryptError::OwnMessage),
            _ => Err(DecryptError::NotApplication),
        }
    }

    /// Seals `plaintext` so that only members of the current epoch can open it: AEAD
    /// under a key exported from the epoch for (`label`, `context`). Each context is
    /// sealed once (the same bytes may be re-sent), so the nonce is fixed.
    pub fn seal_to_epoch<P: OpenMlsProvider>(
        &self,
        provider: &P,
        label: &str,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, MlsError> {
        let (key, nonce) = self.epoch_key(provider, label, context)?;
        provider
            .crypto()
            .aead_encrypt(
                CIPHERSUITE.aead_algorithm(),
                &key,
                plaintext,
                &nonce,
                label.as_bytes(),
            )
            .map_err(|e| MlsError::Processing(format!("seal: {e:?}")))
    }

    /// Opens what [`Self::seal_to_epoch`] sealed in this same epoch.
    pub fn open_from_epoch<P: OpenMlsProvider>(
        &self,
        provider: &P,
        label: &str,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, MlsError> {
        let (key, nonce) = self.epoch_key(provider, label, context)?;
        provider
            .crypto()
            .aead_decrypt(
                CIPHERSUITE.aead_algorithm(),
                &key,
                sealed,
                &nonce,
                label.as_bytes(),
            )
            .map_err(|e| MlsError::Processing(format!("open: {e:?}")))
    }

    /// The AEAD key exported from the epoch for (`label`, `context`), and the fixed nonce.
    fn epoch_key<P: OpenMlsProvider>(
        &self,
        provider: &P,
        label: &str,
        context: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), MlsError> {
        let key = self
            .group
            .export_secret(
                provider.crypto(),
                label,
                context,
                CIPHERSUITE.aead_key_length(),
            )
            .map_err(other)?;
        Ok((key, vec![0; CIPHERSUITE.aead_nonce_length()]))
    }

    /// The (unauthenticated) epoch of an MLS message, if it parses.
    pub fn peek_epoch(bytes: &[u8]) -> Option<u64> {
        protocol_message(bytes).ok().map(|pm| pm.epoch().as_u64())
    }
}
