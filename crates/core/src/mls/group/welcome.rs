//! Joining a group from a welcome.

use openmls::prelude::tls_codec::Deserialize as TlsDeserialize;
use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;

use super::{MlsConversation, join_config};
use crate::identity::MemberId;
use crate::mls::error::{MlsError, other};
use crate::mls::ident::credential_member;

impl MlsConversation {
    /// Joins from a welcome; `Ok(None)` when it is not for a key package we hold.
    pub fn join_from_welcome<P: OpenMlsProvider>(
        provider: &P,
        welcome: &[u8],
    ) -> Result<Option<Self>, MlsError> {
        Ok(Self::join_checked(provider, welcome, None)?.map(|(g, _)| g))
    }

    /// Joins from a welcome for group `expected` (when given; checked before anything is
    /// stored), and returns the member that authored the welcome (the signer of its group
    /// info). `Ok(None)` when it is not for a key package we hold.
    pub fn join_checked<P: OpenMlsProvider>(
        provider: &P,
        welcome: &[u8],
        expected: Option<&str>,
    ) -> Result<Option<(Self, MemberId)>, MlsError> {
        let msg = MlsMessageIn::tls_deserialize_exact(welcome)
            .map_err(|e| MlsError::Malformed(e.to_string()))?;
        let MlsMessageBodyIn::Welcome(w) = msg.extract() else {
            return Err(MlsError::Malformed("not a welcome".into()));
        };
        let staged = match StagedWelcome::new_from_welcome(provider, &join_config(), w, None) {
            Ok(staged) => staged,
            Err(WelcomeError::NoMatchingKeyPackage)
            | Err(WelcomeError::NoMatchingEncryptionKey) => return Ok(None),
            Err(e) => return Err(MlsError::Processing(format!("{e:?}"))),
        };
        if let Some(name) = expected
            && staged.group_context().group_id().as_slice() != name.as_bytes()
        {
            return Err(MlsError::WrongContext(format!(
                "welcome is for group {:?}, not {name:?}",
                String::from_utf8_lossy(staged.group_context().group_id().as_slice())
            )));
        }
        let sender = credential_member(staged.welcome_sender().map_err(other)?.credential())?;
        let group = staged.into_group(provider).map_err(other)?;
        Ok(Some((Self::wrap(group), sender)))
    }
}
