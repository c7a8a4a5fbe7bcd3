//! A worker's state: the word its status is counted under, by the service's rule.

use std::borrow::Cow;

use crate::config::StateRule;

/// A state no rule produces for a status it could read: the worker is alive but its
/// status is not known (not read in a pass, or forgotten to stay within the budget).
pub(super) const UNKNOWN: &str = "unknown";

pub(super) fn is_idle(idle_states: &[String], state: &str) -> bool {
    idle_states.iter().any(|idle| idle == state)
}

/// A worker's state from its status, by the service's rule, at most [`MAX_STATE_LEN`]
/// bytes. A status the rule cannot read has the state `unknown`; an empty first word is
/// `empty`.
pub fn derive_state(rule: &StateRule, status: &[u8]) -> String {
    state_of(rule, status).into_owned()
}

/// [`derive_state`], borrowed from the status where it can be.
pub(super) fn state_of<'a>(rule: &StateRule, status: &'a [u8]) -> Cow<'a, str> {
    match state_by_rule(rule, status) {
        Cow::Borrowed(state) => Cow::Borrowed(&state[..cut_at(state)]),
        Cow::Owned(mut state) => {
            state.truncate(cut_at(&state));
            Cow::Owned(state)
        }
    }
}

/// Where a state is cut to fit [`MAX_STATE_LEN`], at a character boundary.
fn cut_at(state: &str) -> usize {
    let mut cut = state.len().min(MAX_STATE_LEN);
    while !state.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// A state is one word: whitespace in a JSON state becomes `_` (`"in progress"` is
/// `in_progress`), so that a label with a space ([`crate::core::status_line::FOLDED_STATES`])
/// is never a state; an empty one is `empty`, as an empty first word is.
fn one_word(state: &str) -> String {
    if state.trim().is_empty() {
        return "empty".to_owned();
    }
    state
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// A state is a word, cut at this many bytes: one worker's first word may be a MiB
/// long, and a state is kept per worker, counted, listed on the bus and in metrics.
pub const MAX_STATE_LEN: usize = 64;

fn state_by_rule<'a>(rule: &StateRule, status: &'a [u8]) -> Cow<'a, str> {
    match rule {
        StateRule::FirstWord => match String::from_utf8_lossy(status) {
            Cow::Borrowed(text) => Cow::Borrowed(text.split_whitespace().next().unwrap_or("empty")),
            Cow::Owned(text) => {
                Cow::Owned(text.split_whitespace().next().unwrap_or("empty").to_owned())
            }
        },
        StateRule::JsonPointer(pointer) => serde_json::from_slice::<serde_json::Value>(status)
            .ok()
            .and_then(|value| match value.pointer(pointer)? {
                serde_json::Value::String(s) => Some(one_word(s)),
                serde_json::Value::Null => None,
                other => Some(one_word(&other.to_string())),
            })
            .map_or(Cow::Borrowed(UNKNOWN), Cow::Owned),
    }
}
