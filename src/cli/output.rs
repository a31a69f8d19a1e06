//! Human-readable renderings of the API's answers.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use crate::api::types::*;

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
        s.conversations.join(", ")
    };
    let mut out = String::new();
    let _ = writeln!(out, "address        {}", s.address);
    let _ = writeln!(out, "peer id        {}", s.peer_id);
    if !s.enr.is_empty() {
        let _ = writeln!(out, "enr            {}", s.enr);
    }
    let _ = writeln!(out, "peers          {}", s.peers);
    for l in &s.listen {
        let _ = writeln!(out, "listening on   {l}");
    }
    let _ = writeln!(out, "conversations  {convs}");
    for q in &s.quarantined {
        let _ = writeln!(out, "quarantined    {}: {}", q.name, q.reason);
    }
    out
}

pub(crate) fn health(h: &HealthView) -> String {
    let mut out = h.status.clone();
    if let Some(e) = &h.error {
        out.push_str(": ");
        out.push_str(e);
    }
    out.push('\n');
    for q in &h.quarantined {
        let _ = writeln!(
            out,
            "quarantined {} since {}: {}",
            q.name,
            time(q.since),
            q.reason
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
                c.name.clone(),
                c.state.clone(),
                c.epoch.to_string(),
                c.members.to_string(),
            ]
        })
        .collect();
    table(&["NAME", "STATE", "EPOCH", "MEMBERS"], &rows)
}

pub(crate) fn conversation(c: &ConversationView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "conversation  {}", c.name);
    let _ = writeln!(out, "state         {}", c.state);
    let _ = writeln!(out, "epoch         {}", c.epoch);
    let _ = writeln!(out, "members       {}", c.members.len());
    if !c.members.is_empty() {
        let rows: Vec<Vec<String>> = c
            .members
            .iter()
            .map(|m| vec![m.address.clone(), m.role.clone(), m.score.to_string()])
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
            "{} [epoch {}] {}: {}",
            time(m.timestamp),
            m.epoch,
            m.sender,
            m.text
        );
    }
    out
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
                p.kind.clone(),
                p.status.clone(),
                p.yes.to_string(),
                p.no.to_string(),
                p.expected.to_string(),
                p.summary.clone(),
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
        Ok(e) => format!("{} {} {}", e.conversation, e.kind, e.data),
        Err(_) => raw.to_string(),
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
}
