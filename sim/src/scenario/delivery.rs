//! Judging the data-exchange expectations: what the sender saw against what the receiver's
//! store holds when the run ends.

use super::exchange::{Located, SendPlan, SendRecord};
use super::expect::{Evidence, Expectation};

fn record<'a>(ev: &'a Evidence<'_>, tag: &str) -> Option<&'a SendRecord> {
    ev.sends.iter().find(|s| s.tag == tag)
}

/// The sender's view, in words.
fn sender_saw(ev: &Evidence<'_>, tag: &str) -> String {
    match record(ev, tag) {
        Some(r) => r.describe(),
        None => "no outcome: the send was still waiting when the run ended, or its daemon crashed"
            .to_string(),
    }
}

fn where_stored(ev: &Evidence<'_>, plan: &SendPlan) -> String {
    match ev.located.get(&plan.tag) {
        Some(Located::Found(name)) => format!("{} holds it as {name}", plan.to),
        Some(Located::Differs(why)) => format!("{}: {why}", plan.to),
        Some(Located::Missing) | None => format!("{} holds nothing of it", plan.to),
    }
}

fn is_found(ev: &Evidence<'_>, tag: &str) -> bool {
    matches!(ev.located.get(tag), Some(Located::Found(_)))
}

/// Returns (description, passed, detail) for a data-exchange expectation.
pub(crate) fn judge(e: &Expectation, ev: &Evidence<'_>) -> (String, bool, String) {
    let plan = |tag: &str| ev.plans.iter().find(|p| p.tag == tag);
    let both = |tag: &str| match plan(tag) {
        Some(p) => format!(
            "{}; sender saw {}",
            where_stored(ev, p),
            sender_saw(ev, tag)
        ),
        None => "no such send".to_string(),
    };
    match e {
        Expectation::Delivered { tag } => (
            format!("{tag:?} was delivered byte for byte"),
            is_found(ev, tag),
            both(tag),
        ),
        Expectation::NotDelivered { tag } => (
            format!("{tag:?} was not delivered"),
            matches!(ev.located.get(tag.as_str()), Some(Located::Missing)),
            both(tag),
        ),
        Expectation::Acked { tag } => (
            format!("the sender of {tag:?} saw its ACK"),
            record(ev, tag).is_some_and(|r| r.acked),
            sender_saw(ev, tag),
        ),
        Expectation::NotAcked { tag } => (
            format!("the sender of {tag:?} was not told it was stored"),
            record(ev, tag).is_none_or(|r| !r.claimed && !r.acked),
            sender_saw(ev, tag),
        ),
        Expectation::AckedKept { to } => {
            let scope: Vec<&SendPlan> = ev
                .plans
                .iter()
                .filter(|p| to.as_ref().is_none_or(|t| p.to == *t))
                .collect();
            let mut kept = Vec::new();
            let mut lost = Vec::new();
            let mut false_claims = Vec::new();
            let mut unacked = Vec::new();
            for p in &scope {
                match record(ev, &p.tag) {
                    Some(r) if r.acked && is_found(ev, &p.tag) => kept.push(p.tag.as_str()),
                    Some(r) if r.acked => lost.push(format!("{} ({})", p.tag, where_stored(ev, p))),
                    Some(r) if r.claimed => {
                        false_claims.push(format!("{} ({})", p.tag, r.describe()))
                    }
                    _ => unacked.push(p.tag.as_str()),
                }
            }
            let passed = lost.is_empty() && false_claims.is_empty() && !kept.is_empty();
            let mut detail = format!("ACKed and kept: {}", list(&kept));
            if !lost.is_empty() {
                detail.push_str(&format!("; ACKed but LOST: {}", lost.join(", ")));
            }
            if !false_claims.is_empty() {
                detail.push_str(&format!(
                    "; told stored by a mismatched ACK: {}",
                    false_claims.join(", ")
                ));
            }
            detail.push_str(&format!("; not ACKed: {}", list(&unacked)));
            let whom = to.as_ref().map(|t| format!(" to {t}")).unwrap_or_default();
            (
                format!(
                    "every ACKed send{whom} is kept, and no sender was told stored without an ACK"
                ),
                passed,
                detail,
            )
        }
        _ => (
            String::new(),
            false,
            "not a data-exchange expectation".to_string(),
        ),
    }
}

fn list(tags: &[&str]) -> String {
    if tags.is_empty() {
        "none".to_string()
    } else {
        tags.join(", ")
    }
}
