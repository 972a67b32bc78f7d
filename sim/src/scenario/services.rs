//! The event-stream and task actions and expectations: their checks when a scenario is read,
//! and the judging of what each subscription and task ended with.

use super::action::Action;
use super::expect::{Evidence, Expectation};
use super::pubsub::SubscriptionRecord;
use super::tasks::TaskView;
use super::{invalid, ScenarioError};
use std::collections::{BTreeMap, BTreeSet};

/// A task as the script submits it.
#[derive(Clone, Debug)]
pub(crate) struct TaskPlan {
    pub tag: String,
    pub from: String,
    pub to: String,
    pub id: String,
}

/// How a task ended, on both sides.
#[derive(Clone, Debug)]
pub(crate) struct TaskEnd {
    pub plan: TaskPlan,
    /// The submitter's task folders.
    pub at_from: TaskView,
    /// The receiver's task folders.
    pub at_to: TaskView,
}

fn empty(what: &str, field: &str, example: &str) -> ScenarioError {
    invalid(format!("{what}: `{field}` is empty"), example.to_string())
}

/// Checks one event-stream or task action's own fields.
pub(crate) fn check_action(action: &Action, what: &str) -> Result<(), ScenarioError> {
    match action {
        Action::Subscribe {
            host,
            at,
            topic,
            count,
            tag,
        } => {
            crosses(what, host, at)?;
            if topic.is_empty() {
                return Err(empty(
                    what,
                    "topic",
                    "topic = \"news\", or \"*\" for every topic",
                ));
            }
            if tag.is_empty() {
                return Err(empty(what, "tag", "tag = \"s1\" names the subscription"));
            }
            if *count == Some(0) {
                return Err(invalid(
                    format!("{what}: count = 0 would end the subscription at once"),
                    "count = 3 stops after three events; leave it out to keep it until the end",
                ));
            }
            Ok(())
        }
        Action::Publish {
            host,
            at,
            topic,
            texts,
        } => {
            crosses(what, host, at)?;
            if texts.is_empty() {
                return Err(invalid(
                    format!("{what}: `texts` is empty, so nothing is published"),
                    "texts = [\"first\", \"second\"]",
                ));
            }
            if topic.is_empty() || topic == "*" {
                return Err(invalid(
                    format!("{what}: events are published on a named topic, not {topic:?}"),
                    "topic = \"news\" (subscribers of \"*\" get it too)",
                ));
            }
            Ok(())
        }
        Action::SubmitTask {
            from,
            to,
            task,
            tag,
        } => {
            crosses(what, from, to)?;
            if task.is_empty() {
                return Err(empty(what, "task", "task = \"summarise the report\""));
            }
            if tag.is_empty() {
                return Err(empty(what, "tag", "tag = \"t1\" names the task"));
            }
            Ok(())
        }
        Action::DeclineTask { justification, .. } if justification.is_empty() => {
            Err(empty(what, "justification", "justification = \"busy\""))
        }
        _ => Ok(()),
    }
}

fn crosses(what: &str, a: &str, b: &str) -> Result<(), ScenarioError> {
    if a == b {
        return Err(invalid(
            format!("{what}: {a:?} would talk to itself, crossing no network"),
            "name another daemon host",
        ));
    }
    Ok(())
}

/// What the script has started so far, for the checks that look back.
#[derive(Default)]
pub(crate) struct Started<'a> {
    subscriptions: BTreeSet<&'a str>,
    /// Task tag to its submitter and receiver.
    tasks: BTreeMap<&'a str, (&'a str, &'a str)>,
}

impl<'a> Started<'a> {
    /// Checks `action` against the actions before it, then records what it starts.
    pub(crate) fn check(&mut self, action: &'a Action, what: &str) -> Result<(), ScenarioError> {
        match action {
            Action::Subscribe { tag, .. } if !self.subscriptions.insert(tag) => Err(invalid(
                format!("{what}: subscription tag {tag:?} is used twice"),
                "give each subscription its own tag",
            )),
            Action::SubmitTask { tag, from, to, .. } => match self.tasks.insert(tag, (from, to)) {
                Some(_) => Err(invalid(
                    format!("{what}: task tag {tag:?} is used twice"),
                    "give each task its own tag",
                )),
                None => Ok(()),
            },
            Action::AcceptTask { host, tag }
            | Action::DeclineTask { host, tag, .. }
            | Action::ExecuteTask { host, tag }
            | Action::SendResults { host, tag, .. } => match self.tasks.get(tag.as_str()) {
                Some((_, to)) if to == host => Ok(()),
                Some((_, to)) => Err(invalid(
                    format!("{what}: task {tag:?} was submitted to {to:?}, not {host:?}"),
                    format!(
                        "host = {to:?}: only the receiver accepts, executes and answers a task"
                    ),
                )),
                None => Err(invalid(
                    format!("{what}: task {tag:?} is not submitted by an earlier action"),
                    "add a do = \"submit-task\" action with this tag first",
                )),
            },
            _ => Ok(()),
        }
    }

    /// Checks that a wait's `subscribed` names an earlier subscription.
    pub(crate) fn check_subscribed(&self, tag: &str, what: &str) -> Result<(), ScenarioError> {
        if self.subscriptions.contains(tag) {
            return Ok(());
        }
        Err(invalid(
            format!("{what}: subscription {tag:?} is not started by an earlier action"),
            "`subscribed` in a wait names the tag of an earlier subscribe action",
        ))
    }

    /// Checks that an expectation names a subscription or task the script starts.
    pub(crate) fn check_expectation(
        &self,
        e: &Expectation,
        what: &str,
    ) -> Result<(), ScenarioError> {
        match e {
            Expectation::Events { tag, .. } if !self.subscriptions.contains(tag.as_str()) => {
                Err(invalid(
                    format!("{what}: no subscribe action has tag {tag:?}"),
                    "name the tag of a do = \"subscribe\" action",
                ))
            }
            Expectation::TaskStatus { tag, .. } | Expectation::TaskResults { tag, .. }
                if !self.tasks.contains_key(tag.as_str()) =>
            {
                Err(invalid(
                    format!("{what}: no submit-task action has tag {tag:?}"),
                    "name the tag of a do = \"submit-task\" action",
                ))
            }
            Expectation::TaskStatus { tag, host, .. } => {
                let (from, to) = self.tasks[tag.as_str()];
                if host != from && host != to {
                    return Err(invalid(
                        format!("{what}: {host:?} neither submitted nor received task {tag:?}"),
                        format!(
                            "host = {from:?} (the submitter's copy) or {to:?} (the receiver's)"
                        ),
                    ));
                }
                if pilot::services::tasks::Status::parse(status_of(e)).is_none() {
                    return Err(invalid(
                        format!("{what}: {:?} is not a task status", status_of(e)),
                        "one of NEW, ACCEPTED, DECLINED, EXECUTING, SUCCEEDED, COMPLETED, CANCELLED, EXPIRED",
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn status_of(e: &Expectation) -> &str {
    match e {
        Expectation::TaskStatus { status, .. } => status,
        _ => "",
    }
}

fn show_events(record: Option<&SubscriptionRecord>) -> String {
    let Some(r) = record else {
        return "the subscription never started".to_string();
    };
    let got: Vec<String> = r.events.iter().map(|(_, p)| format!("{p:?}")).collect();
    let mut text = format!("received [{}]", got.join(", "));
    if let Some(e) = &r.error {
        text.push_str(&format!("; ended: {e}"));
    }
    text
}

fn show_task(end: &TaskEnd) -> String {
    let or_none = |s: &Option<String>| s.clone().unwrap_or_else(|| "no file".to_string());
    format!(
        "{} (submitter) holds {}; {} (receiver) holds {}",
        end.plan.from,
        or_none(&end.at_from.submitted),
        end.plan.to,
        or_none(&end.at_to.received)
    )
}

/// Returns (description, passed, detail) for an event-stream or task expectation.
pub(crate) fn judge(e: &Expectation, ev: &Evidence<'_>) -> (String, bool, String) {
    match e {
        Expectation::Events { tag, texts } => {
            let record = ev.subscriptions.get(tag);
            let got: Vec<&str> = record
                .map(|r| r.events.iter().map(|(_, p)| p.as_str()).collect())
                .unwrap_or_default();
            (
                format!("subscription {tag:?} received exactly {texts:?}, in order"),
                record.is_some() && got == *texts,
                show_events(record),
            )
        }
        Expectation::TaskStatus { host, tag, status } => {
            let Some(end) = ev.tasks.get(tag) else {
                return (
                    format!("task {tag:?} is {status}"),
                    false,
                    "no such task".into(),
                );
            };
            let seen = if *host == end.plan.from {
                &end.at_from.submitted
            } else {
                &end.at_to.received
            };
            (
                format!("{host}'s copy of task {tag:?} is {status}"),
                seen.as_deref() == Some(status.as_str()),
                show_task(end),
            )
        }
        Expectation::TaskResults { tag, text } => {
            let results = ev.tasks.get(tag).and_then(|t| t.at_from.results.clone());
            (
                format!("the submitter of task {tag:?} holds the results {text:?}"),
                results.as_deref() == Some(text.as_str()),
                match results {
                    Some(r) => format!("it holds {r:?}"),
                    None => "it holds no results".to_string(),
                },
            )
        }
        _ => (
            String::new(),
            false,
            "not an event-stream or task expectation".to_string(),
        ),
    }
}
