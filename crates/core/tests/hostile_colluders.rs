//! Members acting together against the rest: what a few colluding insiders, each with
//! its own key and MLS membership, cannot decide on their own votes.

mod hostile;
mod sim;

use demls_core::consensus::{ConsensusState, NewProposal, self_leave_proposal_id};
use demls_core::conversation::{Action, Event, InboundKind, ProposalStatus, Subtopic};
use demls_core::proto::{cpb, pb};
use demls_core::steward;
use hostile::*;
use sim::{Net, Sim, fast_config};

/// A proposal made by `a` on `made_s` (Unix seconds), claiming `voters` voters, with YES
/// votes signed by `a` and `b`.
fn two_yes_votes(
    s: &mut Sim,
    a: usize,
    b: usize,
    action: Action,
    voters: u32,
    made_s: u64,
) -> cpb::Proposal {
    let mut cs = ConsensusState::default();
    let created = {
        let m = &mut s.members[a];
        cs.create_proposal(
            &m.identity.eth,
            &mut m.rng,
            made_s,
            NewProposal {
                name: action.summary(),
                payload: action.to_payload(),
                expected_voters: voters,
                expiration_s: 60,
                liveness_yes: true,
                fixed_id: None,
            },
            Some(true),
        )
        .expect("create")
    };
    let id = created.proposal.proposal_id;
    let m = &mut s.members[b];
    cs.cast_vote(&m.identity.eth, &mut m.rng, id, true, made_s)
        .expect("second vote");
    cs.evidence(id).expect("held")
}

/// Whether any of `among` decided proposal `id` YES (accepted, or carried out).
fn decided_yes(s: &Sim, among: &[usize], id: u32) -> Vec<usize> {
    among
        .iter()
        .copied()
        .filter(|i| {
            s.members[*i].conv().proposals().any(|p| {
                p.id == id
                    && matches!(
                        p.status,
                        ProposalStatus::Accepted | ProposalStatus::Committed
                    )
            })
        })
        .collect()
}

/// The group grew one join at a time to 6, minutes ago; its first three members were all
/// there was for a while. Two of them collude: they make a removal of the last member
/// whose header claims 3 voters (the group's size back then), both vote YES, and one
/// re-sends it as a proposal state. 3 has not been a size of this group for minutes, so
/// the header is refused and nothing is decided. (Before, the count was admissible as
/// one of the last 16 sizes the group had, whenever the header was made: the third
/// founding member, which remembers that size, decided the removal on the two votes,
/// while later joiners refused it.)
#[test]
fn two_colluders_cannot_decide_by_a_size_the_group_had_long_ago() {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 6);
    s.run_for(3 * MIN);
    let (a, b, victim) = (ids[0], ids[1], ids[5]);
    let honest = others(&ids, &[a, b]);
    let remove = Action::Remove {
        member: s.id(victim),
    };
    let now_s = s.now / 1000;
    let p = two_yes_votes(&mut s, a, b, remove, 3, now_s);
    let id = p.proposal_id;
    let env = insider_app_message(&mut s, a, pb::app_message::Body::ProposalState(p));
    s.inject(a, Subtopic::AppMsg, env);
    s.run_for(2 * MIN);
    let deciders = decided_yes(&s, &honest, id);
    let removed = removed_at(&s, &honest, victim);
    assert!(
        deciders.is_empty() && removed.is_empty(),
        "two colluders' header claiming an old group size was decided at {deciders:?}, the \
         member removed at {removed:?}\n{}",
        s.describe()
    );
}

/// The same colluders claim the current epoch's steward election, made (by its header)
/// when the group had 3 members, naming themselves (the retry round that puts them first).
/// An election of this epoch was made with this epoch's group: an old size never
/// justifies one, however far back its header is dated.
#[test]
fn two_colluders_cannot_elect_themselves_by_a_backdated_old_size() {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 6);
    s.run_for(3 * MIN);
    let (a, b) = (ids[0], ids[1]);
    let honest = others(&ids, &[a, b]);
    let conv = s.members[ids[2]].conv();
    let epoch = conv.epoch();
    let members = conv.members();
    let (ia, ib) = (s.id(a), s.id(b));
    let (round, list) = (1u32..10_000)
        .find_map(|r| {
            let l = steward::generate(&members, epoch, r, &s.name, 1, 2).stewards;
            l.iter().all(|m| *m == ia || *m == ib).then_some((r, l))
        })
        .expect("a retry round electing only the colluders");
    let election = Action::Election {
        stewards: list,
        election_epoch: epoch,
        retry_round: round,
    };
    // Dated when the third member had just joined (the group's first minute or so).
    let p = two_yes_votes(&mut s, a, b, election, 3, 60);
    let id = p.proposal_id;
    let env = insider_app_message(&mut s, a, pb::app_message::Body::ProposalState(p));
    s.inject(a, Subtopic::AppMsg, env);
    s.run_for(MIN);
    let deciders = decided_yes(&s, &honest, id);
    assert!(
        deciders.is_empty(),
        "a backdated election claiming an old group size was decided at {deciders:?}\n{}",
        s.describe()
    );
}

/// How long the lies run before beacons are counted, and how long they are counted.
const LIES_SETTLE: u64 = 2 * MIN;
const LIES_WINDOW: u64 = 8 * MIN;

/// Runs `lie` (one lie sent) every `every` ms for `LIES_SETTLE + LIES_WINDOW`, then checks
/// that the `honest` members sent beacons in the window at no more than the usual rate:
/// one per member per half beacon interval (`commit_inactivity`), fewer when others'
/// matching beacons suppress it.
fn assert_usual_beacon_rate(
    s: &mut Sim,
    honest: &[usize],
    every: u64,
    what: &str,
    mut lie: impl FnMut(&mut Sim),
) {
    let t0 = s.now + LIES_SETTLE;
    while s.now < t0 + LIES_WINDOW {
        lie(s);
        s.run_for(every);
    }
    let n = beacons_since(s, t0, honest) as u64;
    let usual = honest.len() as u64 * LIES_WINDOW / fast_config().commit_inactivity;
    let min = LIES_WINDOW / MIN;
    eprintln!("honest beacons in {min} min of {what}: {n} (usual-rate bound {usual})");
    assert!(
        n <= usual,
        "{} honest members sent {n} beacons in {min} min of {what} (the usual rate allows \
         {usual})\n{}",
        honest.len(),
        s.describe()
    );
}

/// Six members, two of them offline, and one of the rest (returned) lying: its lie ties
/// with the three others if the offline ones count on its side. Also the others and the
/// epoch they are in.
fn liar_among_six_with_two_offline() -> (Sim, usize, Vec<usize>, u64) {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 6);
    s.run_for(MIN);
    s.crash(ids[4]);
    s.crash(ids[5]);
    let liar = ids[1];
    let honest = others(&ids, &[liar, ids[4], ids[5]]);
    let epoch = s.members[ids[0]].conv().epoch();
    (s, liar, honest, epoch)
}

/// One member signs a beacon every 20 s with a false hash (the lowest there is, so it
/// wins ties) for the epoch everyone else is in; two of the six members are offline, so
/// the lie ties with the three online members if the offline ones are counted on its
/// side. The others answer at the fork rate while the liar could still be a member on
/// its way off a losing branch, then, having heard that they do not lose, go back to
/// their usual beacon rate for as long as it lies. (Before, the fork record lived as
/// long as the lie was repeated, and every member sent a beacon every
/// `4 × recovery_inactivity` all that time: 720 beacons from the three in 8 min, against
/// 163 now.) A beacon speaks for its sender for `4 × commit_inactivity` (24 s here).
#[test]
fn a_member_lying_about_an_old_epoch_does_not_keep_everyone_beaconing() {
    let (mut s, liar, honest, epoch) = liar_among_six_with_two_offline();
    assert_usual_beacon_rate(&mut s, &honest, 20_000, "lies", |s| {
        let b = lying_beacon(s, liar, epoch, false);
        s.inject(liar, Subtopic::AppMsg, b);
    });
}

/// The same liar alternates between two lies every 4 s: a branch of its own from the
/// epoch before the current one, then agreement there and a branch from the current
/// epoch. Each switch made the fork record look healed and start again, with a fresh
/// settling delay and grace (9 s here, longer than the 8 s cycle) and a round of answers
/// from everyone, so nobody ever judged the lie settled and every member beaconed at the
/// fork rate for as long as it lied (722 beacons from three members in 8 min). Each
/// fork epoch's first sighting is remembered across such resets now: delays run from
/// it, and everyone answers a sighting once.
#[test]
fn a_member_alternating_its_lies_does_not_keep_everyone_beaconing() {
    let (mut s, liar, honest, epoch) = liar_among_six_with_two_offline();
    assert!(epoch >= 2, "the group went through a few epochs");
    let mut earlier = true;
    assert_usual_beacon_rate(&mut s, &honest, 4_000, "alternating lies", |s| {
        let at = if earlier { epoch - 1 } else { epoch };
        let b = lying_beacon(s, liar, at, false);
        s.inject(liar, Subtopic::AppMsg, b);
        earlier = !earlier;
    });
}

/// A liar names another fork epoch in each beacon, one a second, cycling through 17 of
/// the epochs in everyone's log (a one-hash beacon at an epoch differs there). Each step
/// up made the record look healed and start again; with 16 sightings remembered, each
/// return to the cycle's start pushed out the next epoch's, so 16 of 17 lies were fresh
/// sightings, each answered by everyone with a fresh grace: a beacon per member about
/// every second (904 from three members in 8 min). Sightings are kept for every epoch
/// of the log now.
#[test]
fn a_member_lying_about_many_epochs_does_not_keep_everyone_beaconing() {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 4);
    let (liar, churner) = (ids[1], ids[2]);
    // Leave and rejoin nine times: 18 more epochs in everyone's log.
    for _ in 0..9 {
        s.leave(churner);
        let rest = others(&ids, &[churner]);
        let left = s.run_until(5 * MIN, |s| {
            rest.iter()
                .all(|i| s.members[*i].conv().members().len() == 3)
        });
        assert!(left, "the leave was not committed\n{}", s.describe());
        s.join(churner);
        s.assert_converge_rejoining(&ids, 20 * MIN);
    }
    s.run_for(MIN);
    let epoch = s.members[ids[0]].conv().epoch();
    assert!(epoch >= 18, "epoch {epoch}");
    silence_beacons(&mut s, liar);
    let honest = others(&ids, &[liar]);
    let cycle: Vec<u64> = (epoch - 17..epoch).collect();
    let mut next = cycle.iter().copied().cycle();
    let to = honest.clone();
    assert_usual_beacon_rate(&mut s, &honest, 1_000, "lies about 17 epochs", |s| {
        let b = lying_beacon_at(s, liar, next.next().expect("endless"));
        // Past its own filter, which drops its true beacons.
        for &i in &to {
            s.deliver(i, liar, Subtopic::AppMsg, b.clone());
        }
    });
}

/// A member proposes a removal that lives ten times longer than the conversation lets a
/// proposal live. Members refuse it from its owner as they refuse it in a commit's
/// evidence (found in session 13: taken live, it was decided and committed, and every
/// member that learnt it from the commit instead, its own proposer included, refused
/// that commit and was left behind).
#[test]
fn a_proposal_living_longer_than_allowed_is_refused_on_every_path() {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 4);
    let (v, w) = (ids[1], ids[2]);
    let liveness = s.members[ids[0]].conv().config().liveness_criteria_yes;
    let target = s.id(w);
    let mut p = forged_proposal(&mut s, v, Action::Remove { member: target }, 4, liveness);
    p.expiration_timestamp = p.timestamp + 10 * fast_config().proposal_expiration / 1000;
    let id = p.proposal_id;
    let env = insider_app_message(&mut s, v, pb::app_message::Body::Proposal(p));
    s.inject(v, Subtopic::AppMsg, env);
    s.run_for(2 * MIN);
    let deciders = decided_yes(&s, &ids, id);
    assert!(
        deciders.is_empty(),
        "a proposal living too long was decided at {deciders:?}\n{}",
        s.describe()
    );
    s.assert_agree(&ids, &ids, MIN);
}

/// A member makes a removal of another member under the id its own leave would have (any
/// id is free for a proposal with a group vote), the group decides and commits it, then
/// the member leaves. Its leave is no renewal of an earlier leave of its own: the
/// removal's record stays (review, session 13: a leave replaced any finished record under
/// that id, and one accepted but not yet committed lost the proof its commit carries).
#[test]
fn a_leave_does_not_replace_another_proposal_made_under_its_id() {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 4);
    let (v, w) = (ids[1], ids[2]);
    let honest = others(&ids, &[v, w]);
    let id = self_leave_proposal_id(&s.id(v));
    let liveness = s.members[ids[0]].conv().config().liveness_criteria_yes;
    let target = s.id(w);
    let mut p = forged_proposal(&mut s, v, Action::Remove { member: target }, 4, liveness);
    p.proposal_id = id;
    let env = insider_app_message(&mut s, v, pb::app_message::Body::Proposal(p));
    s.inject(v, Subtopic::AppMsg, env);
    let done = s.run_until(5 * MIN, |s| {
        honest.iter().all(|i| {
            s.members[*i]
                .conv()
                .proposals()
                .any(|t| t.id == id && t.status == ProposalStatus::Committed)
        })
    });
    assert!(done, "the removal was not carried out\n{}", s.describe());
    s.run_for(1_000);
    // Its own leave, made as `Conversation::leave` makes one (which, holding a record under
    // that id itself, sends nothing).
    let own_leave = NewProposal {
        name: format!("self-leave:{id}"),
        payload: Action::Remove { member: s.id(v) }.to_payload(),
        expected_voters: 1,
        expiration_s: fast_config().proposal_expiration / 1000,
        liveness_yes: liveness,
        fixed_id: Some(id),
    };
    let leave = proposal_by(&mut s, v, own_leave, Some(true));
    let env = insider_app_message(&mut s, v, pb::app_message::Body::Proposal(leave));
    s.inject(v, Subtopic::AppMsg, env);
    s.run_for(MIN);
    for &i in &honest {
        let kept = s.members[i]
            .conv()
            .proposals()
            .find(|t| t.id == id)
            .map(|t| t.action.clone());
        assert_eq!(
            kept,
            Some(Action::Remove { member: target }),
            "member {i}: the record under {id} was replaced by a leave\n{}",
            s.describe()
        );
    }
}

/// A member signs a beacon whose hash differs from everyone's at an epoch and agrees
/// again at the next one: no real branch looks like that (each epoch's key schedule
/// derives from the one before). Members refuse it as a lie; no fork is seen.
#[test]
fn a_beacon_that_differs_and_then_agrees_is_refused() {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 4);
    s.run_for(MIN);
    let liar = ids[1];
    let honest = others(&ids, &[liar]);
    let epoch = s.members[ids[0]].conv().epoch();
    let t0 = s.now;
    let b = lying_beacon(&s, liar, epoch - 1, true);
    s.inject(liar, Subtopic::AppMsg, b);
    s.run_for(30_000);
    // The last joiner's log begins at the current epoch: it has nothing to compare.
    for &i in &others(&ids, &[liar, ids[3]]) {
        let refused = s
            .events_of(i, |e| {
                matches!(
                    e,
                    Event::Rejected {
                        what: InboundKind::Beacon,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(refused, 1, "member {i}\n{}", s.describe());
    }
    // No fork round: beacons at the usual rate (at most one per member per half
    // interval, `commit_inactivity`), not every `4 × recovery_inactivity`.
    let n = beacons_since(&s, t0, &honest) as u64;
    let usual = honest.len() as u64 * 30_000 / fast_config().commit_inactivity;
    assert!(
        n <= usual,
        "{n} beacons in 30 s (usual {usual})\n{}",
        s.describe()
    );
}
