use super::*;
use crate::identity::EthSigner;
use crate::proto::pb;
use rand::SeedableRng;

const CH: &str = "room";

fn params() -> Params {
    Params::from_config(&ConversationConfig::default())
}

struct Peer {
    key: EthSigner,
    ch: Channel,
}

impl Peer {
    fn id(&self) -> MemberId {
        self.key.member_id()
    }
}

fn peers(n: usize) -> Vec<Peer> {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    (0..n)
        .map(|_| Peer {
            key: EthSigner::random_with(&mut rng),
            ch: Channel::new(0),
        })
        .collect()
}

fn roster(ps: &[Peer]) -> Vec<MemberId> {
    ps.iter().map(Peer::id).collect()
}

fn send(ps: &mut [Peer], from: usize, now: Millis, text: &str) -> pb::SdsMessage {
    send_at(ps, from, now, 1, text)
}

fn send_at(ps: &mut [Peer], from: usize, now: Millis, epoch: u64, text: &str) -> pb::SdsMessage {
    let me = ps[from].id();
    let others: Vec<_> = roster(ps).into_iter().filter(|m| *m != me).collect();
    let key = ps[from].key.clone();
    let (_, msg) = ps[from]
        .ch
        .send(
            now,
            &params(),
            CH,
            me,
            epoch,
            others,
            text.as_bytes().to_vec(),
            |b| key.sign(b).ok(),
        )
        .unwrap();
    msg
}

fn recv(
    ps: &mut [Peer],
    to: usize,
    now: Millis,
    relayed_by: MemberId,
    msg: &pb::SdsMessage,
) -> Effects {
    let members = roster(ps);
    let me = ps[to].id();
    let c = check(CH, relayed_by, msg.clone()).unwrap();
    ps[to].ch.receive(now, &params(), me, &members, c, |_| true)
}

fn texts(fx: &Effects) -> Vec<String> {
    fx.delivered
        .iter()
        .map(|d| String::from_utf8(d.content.clone()).unwrap())
        .collect()
}

#[test]
fn delivers_in_causal_order_and_drops_duplicates() {
    let mut ps = peers(3);
    let a = ps[0].id();
    let m1 = send(&mut ps, 0, 1_000, "one");
    let m2 = send(&mut ps, 0, 1_001, "two");
    // C gets two before one: two waits, then both come out in order.
    assert!(texts(&recv(&mut ps, 2, 1_002, a, &m2)).is_empty());
    assert_eq!(texts(&recv(&mut ps, 2, 1_003, a, &m1)), ["one", "two"]);
    assert!(
        texts(&recv(&mut ps, 2, 1_004, a, &m1)).is_empty(),
        "duplicate"
    );
}

#[test]
fn a_lost_message_is_repaired_by_its_sender() {
    let p = params();
    let mut ps = peers(3);
    let (a, b) = (ps[0].id(), ps[1].id());
    let m1 = send(&mut ps, 0, 1_000, "lost on the way to C");
    recv(&mut ps, 1, 1_001, a, &m1);
    let m2 = send(&mut ps, 1, 2_000, "reply");
    recv(&mut ps, 0, 2_001, b, &m2);
    assert!(texts(&recv(&mut ps, 2, 2_001, b, &m2)).is_empty());
    assert_eq!(ps[2].ch.missing_count(), 1);
    // C asks after its backoff, in a sync.
    let t = ps[2].ch.deadline(&p).unwrap();
    assert!(t >= 2_001 + p.t_min && t <= 2_001 + p.t_max, "{t}");
    let c = ps[2].id();
    let members = roster(&ps);
    assert!(ps[2].ch.tick(t, &p, c, &members, |_| true).sync_due);
    let sync = ps[2].ch.sync(t, &p, CH, c);
    assert_eq!(sync.repair_request.len(), 1);
    // A (the sender) answers at once; B would wait.
    let fx_a = recv(&mut ps, 0, t + 1, c, &sync);
    assert!(fx_a.rebroadcast.is_empty());
    let fx_a = ps[0].ch.tick(t + 1, &p, a, &members, |_| true);
    assert_eq!(fx_a.rebroadcast.len(), 1);
    let repaired: pb::SdsMessage = prost::Message::decode(fx_a.rebroadcast[0].as_slice()).unwrap();
    // Re-broadcast by A, written by A: C delivers both, in order.
    assert_eq!(
        texts(&recv(&mut ps, 2, t + 2, a, &repaired)),
        ["lost on the way to C", "reply"]
    );
    assert_eq!(ps[2].ch.missing_count(), 0);
}

#[test]
fn a_repair_relayed_by_another_member_keeps_its_author_and_forgeries_fail() {
    let mut ps = peers(3);
    let (a, b) = (ps[0].id(), ps[1].id());
    let m1 = send(&mut ps, 0, 1_000, "from A");
    let fx = recv(&mut ps, 2, 1_001, b, &m1);
    assert_eq!(
        fx.delivered[0].sender, a,
        "the signature names the author, not the relay"
    );
    let mut forged = m1.clone();
    forged.content = Some(b"not from A".to_vec());
    assert_eq!(check(CH, b, forged.clone()).unwrap_err(), SdsError::WrongId);
    let lamport = forged.lamport_timestamp.unwrap();
    forged.message_id = hex::encode(message_id(CH, &a, lamport, 1, b"not from A"));
    assert_eq!(check(CH, b, forged).unwrap_err(), SdsError::BadSignature);
    // A sync names its sender and travels only from it.
    let sync = ps[0].ch.sync(2_000, &params(), CH, a);
    assert_eq!(check(CH, b, sync).unwrap_err(), SdsError::RelayedSync);
}

#[test]
fn acknowledgements_come_from_histories_and_filters_and_unacked_is_resent() {
    let p = params();
    let mut ps = peers(3);
    let (a, b, c) = (ps[0].id(), ps[1].id(), ps[2].id());
    let members = roster(&ps);
    let m1 = send(&mut ps, 0, 1_000, "hello");
    // Nobody answers: re-sent after resend_unacked, then after twice that.
    let fx = ps[0]
        .ch
        .tick(1_000 + p.resend_unacked, &p, a, &members, |_| true);
    assert_eq!(fx.rebroadcast.len(), 1);
    recv(&mut ps, 1, 1_001, a, &m1);
    let reply = send(&mut ps, 1, 30_000, "hi");
    let fx = recv(&mut ps, 0, 30_001, b, &reply);
    assert_eq!(
        fx.acks,
        [AckStatus {
            id: ps[0].ch.outgoing()[0].id,
            acked: 1,
            of: 2,
            done: false
        }]
    );
    recv(&mut ps, 2, 30_002, a, &m1);
    let sync = ps[2].ch.sync(30_003, &p, CH, c);
    let fx = recv(&mut ps, 0, 30_004, c, &sync);
    assert!(fx.acks[0].done && fx.acks[0].acked == 2);
    assert!(ps[0].ch.outgoing().is_empty());
}

#[test]
fn a_message_nobody_can_repair_is_reported_lost_and_what_waited_is_delivered() {
    let p = params();
    let mut ps = peers(3);
    let (a, c) = (ps[0].id(), ps[2].id());
    let members = roster(&ps);
    let _never_seen = send(&mut ps, 0, 1_000, "gone");
    let m2 = send(&mut ps, 0, 1_001, "after");
    assert!(texts(&recv(&mut ps, 2, 1_002, a, &m2)).is_empty());
    let fx = ps[2].ch.tick(1_002 + p.give_up, &p, c, &members, |_| true);
    assert_eq!(fx.lost.len(), 1);
    assert_eq!(fx.lost[0].1, Some(a));
    assert_eq!(texts(&fx), ["after"]);
}

#[test]
fn history_from_before_we_joined_is_not_ours_to_ask_for() {
    let mut ps = peers(3);
    let a = ps[0].id();
    let _old = send(&mut ps, 0, 1_000, "before C joined");
    ps[2].ch = Channel::new(2);
    // A's next message is at epoch 2; its history names epoch 1 < 2.
    let m2 = send_at(&mut ps, 0, 1_001, 2, "after");
    assert_eq!(texts(&recv(&mut ps, 2, 1_002, a, &m2)), ["after"]);
    assert_eq!(ps[2].ch.missing_count(), 0);
}

#[test]
fn hostile_fields_are_refused_not_trusted() {
    let mut ps = peers(2);
    let a = ps[0].id();
    let m = send(&mut ps, 0, 1_000, "x");
    let mut bad = m.clone();
    bad.causal_history =
        vec![bad.causal_history.first().cloned().unwrap_or_default(); MAX_ENTRIES + 1];
    assert!(check(CH, a, bad).is_err());
    let mut bad = m.clone();
    bad.bloom_filter = Some(vec![0xff; 3]);
    assert!(check(CH, a, bad).is_err());
    let mut bad = m.clone();
    bad.channel_id = "other".into();
    assert_eq!(check(CH, a, bad).unwrap_err(), SdsError::WrongChannel);
    let mut bad = m.clone();
    bad.message_id = bad.message_id.to_uppercase();
    assert!(check(CH, a, bad).is_err());
    let mut bad = m;
    bad.lamport_timestamp = None;
    assert!(check(CH, a, bad).is_err());
}

#[test]
fn others_asking_for_what_we_miss_does_not_restart_our_give_up_clock() {
    // Regression: a repair request from another member removed the id from our missing
    // set, the next sweep re-added it as new, and members that kept asking for a message
    // nobody could repair kept each other waiting for ever.
    let p = params();
    let mut ps = peers(3);
    let (a, b, c) = (ps[0].id(), ps[1].id(), ps[2].id());
    let members = roster(&ps);
    let _never_seen = send(&mut ps, 0, 1_000, "gone");
    let m2 = send(&mut ps, 0, 1_001, "after");
    recv(&mut ps, 1, 1_002, a, &m2);
    recv(&mut ps, 2, 1_002, a, &m2);
    let mut t = 1_002;
    let mut lost_at = None;
    while t < 1_002 + 3 * p.give_up && lost_at.is_none() {
        t += p.t_min;
        // B asks every T_min (its own clock), C hears it.
        let ask = ps[1].ch.sync(t, &p, CH, b);
        let mut ask = ask;
        ask.repair_request = m2.causal_history.clone();
        recv(&mut ps, 2, t, b, &ask);
        if !ps[2].ch.tick(t, &p, c, &members, |_| true).lost.is_empty() {
            lost_at = Some(t);
        }
    }
    let lost_at = lost_at.expect("C never gave up");
    assert!(
        lost_at <= 1_002 + p.give_up + p.t_min,
        "gave up at +{}",
        lost_at - 1_002
    );
}

#[test]
fn nothing_is_re_sent_into_a_group_that_added_someone_since() {
    // Regression: an unacknowledged message (a recipient was offline) was re-sent after a
    // commit had added a member, in the new epoch, and the newcomer read what was said
    // before it joined.
    let p = params();
    let mut ps = peers(3);
    let (a, c) = (ps[0].id(), ps[2].id());
    let members = roster(&ps);
    let m1 = send(&mut ps, 0, 1_000, "before the add");
    // Epoch 1's message may no longer be shown to the group (someone joined at 2).
    let added_since = |e: u64| e >= 2;
    let fx = ps[0]
        .ch
        .tick(1_000 + p.resend_unacked, &p, a, &members, added_since);
    assert!(fx.rebroadcast.is_empty(), "not re-sent");
    assert_eq!(fx.acks.len(), 1);
    assert!(fx.acks[0].done, "and no longer waited for");
    assert!(ps[0].ch.outgoing().is_empty());
    // A repair answer scheduled before the commit is not sent after it either.
    recv(&mut ps, 2, 1_001, a, &m1);
    let b = ps[1].id();
    let mut ask = ps[1].ch.sync(2_000, &p, CH, b);
    ask.repair_request = vec![pb::SdsHistoryEntry {
        message_id: m1.message_id.clone(),
        retrieval_hint: Some(1u64.to_be_bytes().to_vec()),
        sender_id: Some(m1.sender_id.clone()),
    }];
    recv(&mut ps, 2, 2_001, b, &ask);
    let fx = ps[2].ch.tick(2_001 + p.t_max, &p, c, &members, added_since);
    assert!(fx.rebroadcast.is_empty(), "repair answer withheld");
}

#[test]
fn a_message_from_before_we_joined_is_not_delivered_even_if_sent_to_us() {
    let mut ps = peers(3);
    let a = ps[0].id();
    let old = send(&mut ps, 0, 1_000, "epoch 1");
    ps[2].ch = Channel::new(2);
    assert!(texts(&recv(&mut ps, 2, 1_001, a, &old)).is_empty());
}

#[test]
fn ids_left_unrepaired_ask_stores_for_history_once() {
    let p = params();
    let mut ps = peers(3);
    let (a, c) = (ps[0].id(), ps[2].id());
    let members = roster(&ps);
    let _never_seen = send(&mut ps, 0, 1_000, "gone");
    let m2 = send(&mut ps, 0, 1_001, "after");
    recv(&mut ps, 2, 5_000, a, &m2);
    // Repair gets its chance first.
    let fx = ps[2]
        .ch
        .tick(5_000 + p.t_max - 1, &p, c, &members, |_| true);
    assert_eq!(fx.history_since, None);
    assert!(ps[2].ch.deadline(&p).unwrap() <= 5_000 + p.t_max);
    let fx = ps[2].ch.tick(5_000 + p.t_max, &p, c, &members, |_| true);
    // From before the newest message C delivered (none: from the start).
    assert_eq!(fx.history_since, Some(0));
    // Once per id gone missing, not on every tick.
    let fx = ps[2]
        .ch
        .tick(5_000 + 2 * p.t_max, &p, c, &members, |_| true);
    assert_eq!(fx.history_since, None);
}
