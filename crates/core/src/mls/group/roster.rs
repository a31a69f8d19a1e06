//! Who is in the group: the roster of the current epoch (cached until a commit changes
//! it), leaves and their keys, and the member behind an MLS sender.

use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;

use super::MlsConversation;
use crate::identity::MemberId;
use crate::mls::error::MlsError;
use crate::mls::ident::{credential_member, parse_key_package};

/// The roster of one epoch, in leaf order and sorted (membership is asked once per vote:
/// a scan of a thousand addresses per vote was a measurable part of a vote's cost).
pub(super) struct Roster {
    epoch: u64,
    in_leaf_order: Vec<MemberId>,
    sorted: Vec<MemberId>,
}

impl MlsConversation {
    /// Members in leaf order.
    pub fn members(&self) -> Vec<MemberId> {
        self.with_roster(|r| r.in_leaf_order.clone())
    }

    /// Runs `f` on the roster of the current epoch (read from the tree once per epoch).
    fn with_roster<R>(&self, f: impl FnOnce(&Roster) -> R) -> R {
        let epoch = self.epoch();
        let mut cached = self.roster.borrow_mut();
        let roster = match cached.take() {
            Some(r) if r.epoch == epoch => r,
            _ => {
                let in_leaf_order: Vec<MemberId> = self
                    .group
                    .members()
                    .filter_map(|m| credential_member(&m.credential).ok())
                    .collect();
                let mut sorted = in_leaf_order.clone();
                sorted.sort_unstable();
                Roster {
                    epoch,
                    in_leaf_order,
                    sorted,
                }
            }
        };
        f(cached.insert(roster))
    }

    /// Members with their leaves' encryption keys: a member re-added under the same
    /// address (a rejoin) shows up as a different entry.
    pub fn member_leaves(&self) -> Vec<(MemberId, Vec<u8>)> {
        self.group
            .members()
            .filter_map(|m| Some((credential_member(&m.credential).ok()?, m.encryption_key)))
            .collect()
    }

    /// The member whose leaf has this key package's encryption key, if any. Its own: an
    /// add consumed the key package and that member has not committed since (which would
    /// renew its leaf), known from the tree alone. Another's: leaf keys are public and a
    /// key package does not prove its holder has the private half, so it is a forgery no
    /// commit can carry (keys must be unique in the tree).
    pub fn leaf_key_holder<P: OpenMlsProvider>(
        &self,
        provider: &P,
        key_package: &[u8],
    ) -> Option<MemberId> {
        let kp = parse_key_package(provider, key_package).ok()?;
        let key = kp.leaf_node().encryption_key();
        self.group
            .members()
            .find(|m| openmls::treesync::EncryptionKey::from(m.encryption_key.clone()) == *key)
            .and_then(|m| credential_member(&m.credential).ok())
    }

    /// Is `m` in the group?
    pub fn is_member(&self, m: &MemberId) -> bool {
        self.with_roster(|r| r.sorted.binary_search(m).is_ok())
    }

    /// Equal at two members iff they share the epoch's key schedule.
    pub fn epoch_authenticator(&self) -> Vec<u8> {
        self.group.epoch_authenticator().as_slice().to_vec()
    }

    /// The leaf `m` holds in the current epoch.
    pub(crate) fn leaf_of(&self, m: &MemberId) -> Option<LeafNodeIndex> {
        self.group
            .members()
            .find(|x| credential_member(&x.credential).ok().as_ref() == Some(m))
            .map(|x| x.index)
    }

    /// Our own id, from our leaf's credential.
    pub(super) fn own_member(&self) -> Option<MemberId> {
        let leaf = self.group.own_leaf()?;
        credential_member(leaf.credential()).ok()
    }

    /// The member behind an MLS sender: only members may send what we process.
    pub(super) fn sender_member(&self, sender: &Sender) -> Result<MemberId, MlsError> {
        match sender {
            Sender::Member(leaf) => {
                let c = self
                    .group
                    .member(*leaf)
                    .ok_or_else(|| MlsError::Processing("sender leaf is empty".into()))?;
                credential_member(c)
            }
            _ => Err(MlsError::Processing("sender is not a member".into())),
        }
    }
}
