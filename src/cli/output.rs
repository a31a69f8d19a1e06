//! Human-readable renderings of the API's answers.
//!
//! Text that other people control (chat, names, reasons, whatever a remote node answers)
//! goes through [`escape`] before it reaches the terminal, so that nobody can send escape
//! sequences to our screen.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use crate::api::types::*;

/// Whether `c` must not reach a terminal as is: C0 controls (ESC, BEL, CR, …), DEL, C1
/// controls (U+0080–U+009F, CSI among them) and the bidirectional overrides and isolates
/// that reorder what is shown.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character of [`is_unsafe`] written as a visible escape (`\n`, `\r`,
/// `\t`, or `\u{1b}`); everything else as is.
pub fn escape(text: &str) -> String {
    if !text.chars().any(is_unsafe) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A JSON body made safe for a terminal without changing what it means: a character of
/// [`is_unsafe`] inside a string becomes its `\uXXXX` escape (JSON allows no raw C0 there;
/// DEL, C1 and the bidi controls are escaped too). Outside strings only JSON whitespace
/// can occur; a newline is kept, any other such character is escaped the same way.
pub fn escape_json(raw: &str) -> String {
    if !raw.chars().any(|c| is_unsafe(c) && c != '\n') {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if is_unsafe(c) && c != '\n' {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{:04x}", u);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Left-aligned columns separated by two spaces.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count());
                l.push_str(c);
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn time(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn status(s: &StatusView) -> String {
    let convs = if s.conversations.is_empty() {
        "-".to_string()
    } else {
        escape(&s.conversations.join(", "))
    };
    let mut out = String::new();
    let _ = writeln!(out, "address        {}", escape(&s.address));
    let _ = writeln!(out, "peer id        {}", escape(&s.peer_id));
    if !s.enr.is_empty() {
        let _ = writeln!(out, "enr            {}", escape(&s.enr));
    }
    let _ = writeln!(out, "peers          {}", s.peers);
    for l in &s.listen {
        let _ = writeln!(out, "listening on   {}", escape(l));
    }
    let _ = writeln!(out, "conversations  {convs}");
    for q in &s.quarantined {
        let _ = writeln!(
            out,
            "quarantined    {}: {}",
            escape(&q.name),
            escape(&q.reason)
        );
    }
    out
}

pub(crate) fn health(h: &HealthView) -> String {
    let mut out = escape(&h.status);
    if let Some(e) = &h.error {
        out.push_str(": ");
        out.push_str(&escape(e));
    }
    out.push('\n');
    for r in h.reasons.iter().filter(|r| !r.contains("is quarantined")) {
        let _ = writeln!(out, "not ready: {}", escape(r));
    }
    for q in &h.quarantined {
        let _ = writeln!(
            out,
            "quarantined {} since {}: {}",
            escape(&q.name),
            time(q.since),
            escape(&q.reason)
        );
    }
    out
}

pub(crate) fn peers(list: &[PeerView]) -> String {
    if list.is_empty() {
        return "no peers connected\n".into();
    }
    let mut out = String::new();
    for p in list {
        let shards = if p.shards.is_empty() {
            "-".to_string()
        } else {
            p.shards
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let score = p
            .score
            .map(|s| format!("{s:.1}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{} {:<8} shards {:<12} score {:>7}  {}",
            escape(&p.peer_id),
            escape(&p.direction),
            escape(&shards),
            score,
            escape(&p.address)
        );
    }
    out
}

pub(crate) fn conversations(list: &[ConversationSummary]) -> String {
    if list.is_empty() {
        return "not in any conversation\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                escape(&c.name),
                escape(&c.state),
                c.epoch.to_string(),
                c.members.to_string(),
            ]
        })
        .collect();
    table(&["NAME", "STATE", "EPOCH", "MEMBERS"], &rows)
}

pub(crate) fn conversation(c: &ConversationView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "conversation  {}", escape(&c.name));
    let _ = writeln!(out, "state         {}", escape(&c.state));
    let _ = writeln!(out, "epoch         {}", c.epoch);
    let _ = writeln!(out, "members       {}", c.members.len());
    if !c.members.is_empty() {
        let rows: Vec<Vec<String>> = c
            .members
            .iter()
            .map(|m| vec![escape(&m.address), escape(&m.role), m.score.to_string()])
            .collect();
        out.push('\n');
        out.push_str(&table(&["ADDRESS", "ROLE", "SCORE"], &rows));
    }
    out
}

pub(crate) fn messages(list: &[MessageView]) -> String {
    if list.is_empty() {
        return "no messages\n".into();
    }
    let mut out = String::new();
    for m in list {
        let _ = writeln!(
            out,
            "{} [epoch {}] {}: {}{}",
            time(m.timestamp),
            m.epoch,
            escape(&m.sender),
            escape(&m.text),
            m.delivery.as_ref().map(delivery).unwrap_or_default()
        );
    }
    out
}

/// How far one of our messages got, after its text: `  (delivered 2/2)`.
fn delivery(d: &crate::api::types::DeliveryView) -> String {
    let state = match d.state.as_str() {
        "delivered_to_some" => "delivered to some",
        s => s,
    };
    format!("  ({} {}/{})", escape(state), d.acked, d.of)
}

pub(crate) fn proposals(list: &[ProposalView]) -> String {
    if list.is_empty() {
        return "no proposals\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                escape(&p.kind),
                escape(&p.status),
                p.yes.to_string(),
                p.no.to_string(),
                p.expected.to_string(),
                escape(&p.summary),
            ]
        })
        .collect();
    table(
        &["ID", "KIND", "STATUS", "YES", "NO", "EXPECTED", "SUMMARY"],
        &rows,
    )
}

/// One event as a line: `conversation kind {data}`.
pub(crate) fn event(raw: &str) -> String {
    match serde_json::from_str::<EventView>(raw) {
        Ok(e) => format!(
            "{} {} {}",
            escape(&e.conversation),
            escape(&e.kind),
            escape_json(&e.data.to_string())
        ),
        Err(_) => escape(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "w".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz    w\n");
    }

    #[test]
    fn our_messages_show_how_far_they_got() {
        let m = |delivery| MessageView {
            sender: "0xAb".into(),
            text: "hi".into(),
            epoch: 2,
            timestamp: 0,
            seq: 1,
            id: Some("aa".into()),
            delivery,
        };
        let d = |state: &str, acked| crate::api::types::DeliveryView {
            state: state.into(),
            acked,
            of: 2,
        };
        let out = messages(&[
            m(None),
            m(Some(d("delivered_to_some", 1))),
            m(Some(d("delivered", 2))),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].ends_with("0xAb: hi"), "{out}");
        assert!(lines[1].ends_with("hi  (delivered to some 1/2)"), "{out}");
        assert!(lines[2].ends_with("hi  (delivered 2/2)"), "{out}");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain text, ünïcode ✓"), "plain text, ünïcode ✓");
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape("x\ny\rz\t"), "x\\ny\\rz\\t");
        assert_eq!(escape("\u{7f}\u{9b}\u{0}"), "\\u{7f}\\u{9b}\\u{0}");
        assert_eq!(escape("\u{202e}abc"), "\\u{202e}abc");
        let raw = "{\"text\":\"a\u{9b}b\u{7f}\u{202e}\"}\n";
        let safe = escape_json(raw);
        assert_eq!(safe, "{\"text\":\"a\\u009bb\\u007f\\u202e\"}\n");
        let v: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(v["text"], "a\u{9b}b\u{7f}\u{202e}");
        assert_eq!(escape_json("{\"a\":1}"), "{\"a\":1}");
    }
}
