//! No amplification: requests from the network are answered at a bounded rate, only to
//! members, and never with more bytes than the doc states; answers nobody can validate
//! are neither re-published nor allowed to cancel real ones; unanswerable asks stop.

mod hostile;
mod sim;

use demls_core::conversation::Subtopic;
use demls_core::proto::pb;
use hostile::*;
use prost::Message;
use sim::{Net, fast_config};

/// Plaintext catch-up requests from someone who is not a member get no commit back.
#[test]
fn outsider_catch_up_requests_are_not_amplified() {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 8);
    let outsider = s.add_member("outsider");
    s.run_for(30_000);
    let epoch = s.members[ids[0]].conv().epoch();
    let t0 = s.now;
    let mut req_bytes = 0;
    for _ in 0..10 {
        for e in epoch.saturating_sub(16)..epoch {
            let req = pb::AppEnvelope {
                body: Some(pb::app_envelope::Body::CatchUpRequest(pb::CatchUpRequest {
                    conversation: s.name.clone(),
                    epoch: e,
                    ..Default::default()
                })),
            }
            .encode_to_vec();
            req_bytes += req.len();
            s.inject(outsider, Subtopic::AppMsg, req);
        }
        s.run_for(1_100);
    }
    let (n, rep_bytes) = traffic(&s, t0, &ids, is_catch_up_commit);
    let amp = rep_bytes as f64 / req_bytes.max(1) as f64;
    eprintln!("outsider catch-up: {req_bytes} B asked, {n} replies ({rep_bytes} B), {amp:.1}x");
    assert!(
        amp < 1.0,
        "outsider requests ({req_bytes} B) drew {n} full commits ({rep_bytes} B): {amp:.0}x"
    );
}

/// A member that missed a commit, while an outsider keeps publishing junk catch-up
/// commits for its epoch, catches up as fast as without junk: junk cancels no real answer.
/// Returns (ms from the first later-epoch message to caught up, if within a minute; real
/// answers sent).
fn catch_up_under_junk(seed: u64) -> (Option<u64>, usize) {
    let Missed {
        mut s,
        outsider,
        b,
        rest,
    } = miss_a_commit(seed, 10_000);
    let target = s.members[rest[0]].conv().epoch();
    let stuck = s.members[b].conv().epoch();
    let junk = junk_candidate(&s, outsider, stuck, vec![], true);
    let t0 = s.now;
    s.chat(rest[0], "hello");
    // Junk every 10 ms: every member hears junk between a request and its own answer.
    while s.now < t0 + MIN && s.members[b].conv().epoch() < target {
        s.inject(outsider, Subtopic::AppMsg, junk.clone());
        s.run_for(10);
    }
    let caught = (s.members[b].conv().epoch() == target).then_some(s.now - t0);
    (caught, traffic(&s, t0, &rest, is_catch_up_commit).0)
}

#[test]
fn junk_catch_up_commits_do_not_cancel_real_answers() {
    // Without junk: the hint's jitter (1 s), then the answer's (up to 1 s) and delays.
    let runs: Vec<_> = (0..4).map(catch_up_under_junk).collect();
    eprintln!("(caught up after ms, real answers) per seed: {runs:?}");
    assert!(
        runs.iter().all(|(t, _)| t.is_some_and(|t| t <= 3_000)),
        "under junk answers a member took this long to catch up: {runs:?}"
    );
}

/// A 100 KiB junk "welcome" naming the members, then a member's announcement replayed ten
/// times: no member re-publishes the blob.
#[test]
fn an_outsider_welcome_blob_is_not_reflected() {
    let (mut s, ids, outsider, _) = setup(0);
    let junk = vec![0x5a; 100 * 1024];
    let blob = pb::WelcomeEnvelope {
        body: Some(pb::welcome_envelope::Body::Welcome(pb::MemberWelcome {
            conversation: s.name.clone(),
            welcome: junk.clone(),
            joiner_ids: ids.iter().map(|i| s.id(*i).to_vec()).collect(),
            ..Default::default()
        })),
    }
    .encode_to_vec();
    let ann = announcement_of(&s, ids[1]);
    let t0 = s.now;
    s.inject(outsider, Subtopic::Welcome, blob);
    s.run_for(1_000);
    for _ in 0..10 {
        s.inject(outsider, Subtopic::Welcome, ann.clone());
        s.run_for(1_000);
    }
    let (n, bytes) = traffic(&s, t0, &ids, |st, p| {
        st == Subtopic::Welcome
            && matches!(welcome_body(p), Some(pb::welcome_envelope::Body::Welcome(w)) if w.welcome == junk)
    });
    assert_eq!(
        n, 0,
        "members re-published the outsider's blob {n} times ({bytes} B)"
    );
}

/// Welcome packets `ids` published since `t0`, and their bytes.
fn welcome_copies_since(s: &sim::Sim, t0: u64, ids: &[usize]) -> (usize, usize) {
    traffic(s, t0, ids, |st, p| {
        st == Subtopic::Welcome
            && matches!(
                welcome_body(p),
                Some(pb::welcome_envelope::Body::Welcome(_))
            )
    })
}

/// The latest joiner's own announcement, replayed once: one member re-sends the welcome
/// it may have missed and the others, seeing that copy, keep theirs (each waits a random
/// delay first). (Before the delay every member that held the welcome sent it at once: 4
/// copies, 9.3 KB, for one 0.4 KB replay in this group of 8.)
#[test]
fn a_replayed_announcement_draws_about_one_welcome_copy() {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 8);
    let outsider = s.add_member("outsider");
    let last = ids[7];
    let ann = announcement_of(&s, last);
    s.run_for(5_000);
    let t0 = s.now;
    s.inject(outsider, Subtopic::Welcome, ann);
    s.run_for(5_000);
    let (n, bytes) = welcome_copies_since(&s, t0, &ids);
    eprintln!("one replayed announcement drew {n} welcome copies ({bytes} B)");
    assert!(
        (1..=2).contains(&n),
        "one replayed announcement drew {n} welcome copies ({bytes} B)"
    );
}

/// The latest joiner asks for its welcome again (its announcement, replayed), and an
/// outsider replays the welcome as first published right after: members still re-send a
/// fresh copy (its sync sealed now). A replay is a copy every member saw before, and
/// cancels nothing. (Before, any copy cancelled the re-sends: none came, and the joiner
/// could only take the replayed copy, with the sync of the welcome's first day.)
#[test]
fn a_replayed_welcome_does_not_cancel_fresh_re_sends() {
    let (n, bytes) = fresh_copies_with_a_welcome_replayed(|raw, _| raw);
    assert!(
        (1..=2).contains(&n),
        "with a replayed welcome, one replayed announcement drew {n} fresh copies ({bytes} B)"
    );
}

/// As above, but the outsider changes one byte of the welcome's sync first, so that no
/// member has seen that copy. The sync is not the committer's to sign (each re-sender
/// seals its own); a copy counts as another member's re-send only if a member signed
/// that sync, so the unsigned copy cancels nothing. (Before, every member took it for a
/// re-send and cancelled its own: no fresh copy came.)
#[test]
fn a_welcome_copy_with_a_changed_sync_does_not_cancel_re_sends() {
    let (n, bytes) = fresh_copies_with_a_welcome_replayed(|_, mut welcome| {
        let flipped = welcome.sync.len() / 2;
        welcome.sync[flipped] ^= 1;
        pb::WelcomeEnvelope {
            body: Some(pb::welcome_envelope::Body::Welcome(welcome)),
        }
        .encode_to_vec()
    });
    assert!(
        (1..=2).contains(&n),
        "with a sync-flipped welcome copy, one replayed announcement drew {n} fresh copies \
         ({bytes} B)"
    );
}

/// In a settled group of 8, 5 s on: an outsider replays the latest joiner's announcement
/// and then `copy(raw, decoded)` of the first welcome that added it. Returns the welcome
/// copies (and their bytes) members sent in the 5 s after.
fn fresh_copies_with_a_welcome_replayed(
    copy: impl FnOnce(Vec<u8>, pb::MemberWelcome) -> Vec<u8>,
) -> (usize, usize) {
    let (mut s, ids) = group(0, Net::clean(), fast_config(), 8);
    let outsider = s.add_member("outsider");
    let last = ids[7];
    let me = s.id(last);
    let ann = announcement_of(&s, last);
    let (raw, welcome) = s
        .log
        .iter()
        .find_map(|(_, _, st, p)| match welcome_body(p) {
            Some(pb::welcome_envelope::Body::Welcome(w))
                if *st == Subtopic::Welcome
                    && w.joiner_ids.iter().any(|j| j.as_slice() == me.as_bytes()) =>
            {
                Some((p.clone(), w))
            }
            _ => None,
        })
        .expect("the joiner's welcome");
    let replayed = copy(raw, welcome);
    s.run_for(5_000);
    let t0 = s.now;
    s.inject(outsider, Subtopic::Welcome, ann);
    s.inject(outsider, Subtopic::Welcome, replayed);
    s.run_for(5_000);
    welcome_copies_since(&s, t0, &ids)
}

/// MLS packets the four members publish in the 10th minute after one insider message
/// naming a proposal id nobody has.
fn asks_in_tenth_minute(body: pb::app_message::Body) -> usize {
    let (mut s, ids, _, _) = setup(0);
    s.run_for(MIN);
    let env = insider_app_message(&mut s, ids[1], body);
    s.inject(ids[1], Subtopic::AppMsg, env);
    s.run_for(10 * MIN);
    traffic(&s, s.now - MIN, &ids, |st, p| {
        st == Subtopic::AppMsg && matches!(app_body(p), Some(pb::app_envelope::Body::MlsMessage(_)))
    })
    .0
}

#[test]
fn unknown_proposal_ids_are_not_asked_for_forever() {
    let by_request = asks_in_tenth_minute(pb::app_message::Body::ProposalRequest(0x0bad_cafe));
    let by_vote = asks_in_tenth_minute(pb::app_message::Body::Vote(demls_core::proto::cpb::Vote {
        proposal_id: 0x0bad_cafe,
        ..Default::default()
    }));
    assert!(
        by_request == 0 && by_vote == 0,
        "still asking in the 10th minute: {by_request} packets after a request, {by_vote} \
         after a vote"
    );
}

/// A member's own signed catch-up request, replayed by an outsider 100 times within its
/// freshness window: answered within the requester's budget, by at most three members
/// each time. Prints the reply bytes per request byte.
#[test]
fn a_replayed_member_request_draws_a_bounded_number_of_answers() {
    let Missed {
        mut s,
        outsider,
        b,
        rest,
    } = miss_a_commit(0, 10_000);
    // b asks once (it sees a later-epoch message) and is then cut off again.
    let t_ask = s.now;
    s.members[b].deaf = false;
    s.chat(rest[0], "hello");
    s.run_until(5_000, |s| {
        traffic(s, t_ask, &[b], is_catch_up_request).0 > 0
    });
    s.members[b].deaf = true;
    let request = s
        .log
        .iter()
        .find(|(at, who, st, p)| *at >= t_ask && *who == b && is_catch_up_request(*st, p))
        .map(|l| l.3.clone())
        .expect("b asked");
    s.run_for(2_000);
    let t0 = s.now;
    for _ in 0..100 {
        s.inject(outsider, Subtopic::AppMsg, request.clone());
        s.run_for(100);
    }
    let (n, bytes) = traffic(&s, t0, &rest, is_catch_up_commit);
    let sent = 100 * request.len();
    eprintln!(
        "replayed member request: {sent} B in 100 copies over 10 s -> {n} answers, {bytes} B \
         ({:.1}x)",
        bytes as f64 / sent as f64
    );
    // One signed request is answered once, by at most three members.
    assert!(n <= 3, "{n} answers to 100 replays of one request");
}
