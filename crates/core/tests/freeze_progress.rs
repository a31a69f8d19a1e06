//! The freeze round's progress as views show it (issue 13, item 3: "freeze progress,
//! candidates seen of expected"): while members freeze on an approved change, each
//! reports the stewards whose candidate it holds among those expected and when
//! selection is due; outside a round, nothing.

mod hostile;
mod sim;

use demls_core::conversation::ConversationState;
use hostile::{MIN, group};
use sim::{Net, fast_config};

#[test]
fn freeze_progress_counts_candidates_of_the_expected_stewards_and_ends_with_the_round() {
    let (mut s, ids) = group(3, Net::clean(), fast_config(), 4);
    for &i in &ids {
        assert_eq!(s.members[i].conv().freeze_progress(), None, "no round yet");
    }
    let target = ids[3];
    s.propose_removal(ids[1], target);
    let observers = &ids[..3];
    // Step until some observer is freezing, checking every report on the way.
    let mut seen_progress = Vec::new();
    let deadline = s.now + 2 * MIN;
    while s.now < deadline && s.step(deadline) {
        for &i in observers {
            let c = s.members[i].conv();
            let p = c.freeze_progress();
            match c.state() {
                ConversationState::Freezing => {
                    let (got, expected, due) = p.expect("a freezing member reports progress");
                    assert!(expected >= 1, "at least one steward is expected");
                    assert!(got <= expected, "{got} of {expected}");
                    assert!(
                        due >= s.now.saturating_sub(5_000),
                        "due {due} now {}",
                        s.now
                    );
                    seen_progress.push((i, got, expected));
                }
                ConversationState::Working if c.epoch() > 0 => {
                    assert_eq!(p, None, "member {i} reports a round while working")
                }
                _ => {}
            }
        }
        if observers
            .iter()
            .all(|i| !s.members[*i].conv().members().contains(&s.id(target)))
        {
            break;
        }
    }
    assert!(
        !seen_progress.is_empty(),
        "no member was ever seen freezing\n{}",
        s.describe()
    );
    assert!(
        seen_progress.iter().any(|(_, got, exp)| got == exp),
        "no member ever held every expected candidate: {seen_progress:?}"
    );
    s.assert_agree(observers, observers, MIN);
    for &i in observers {
        assert_eq!(s.members[i].conv().freeze_progress(), None, "round over");
    }
}
