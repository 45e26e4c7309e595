//! Reads of a running task's keyed state (the API's `GET /v1/jobs/{id}/state/...`, what
//! Flink's Queryable State offered): each task has an inbox of queries, which its mailbox loop
//! answers between two batches, on its own thread, where its state lives. A task waiting for
//! input is woken for them. The inbox is bounded: a task flooded with queries refuses the
//! excess at once rather than queueing without end.

use super::channel::Gate;
use crate::net::control::{StateAnswer, StateQuery};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The queries one task has not answered yet, at most.
const MAX_QUEUED: usize = 64;

/// Where an answer goes.
pub type Reply = Box<dyn FnOnce(StateAnswer) + Send>;

/// A task's queries.
pub struct QueryInbox {
    pending: AtomicBool,
    /// The task has ended: queries are refused.
    closed: AtomicBool,
    queue: Mutex<Vec<(StateQuery, Reply)>>,
    /// The task's input gate, woken when a query arrives (a source task polls anyway).
    gate: Option<Arc<Gate>>,
}

impl QueryInbox {
    pub fn new(gate: Option<Arc<Gate>>) -> Arc<Self> {
        Arc::new(QueryInbox {
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            queue: Mutex::new(Vec::new()),
            gate,
        })
    }

    /// Queues `query` for the task (or answers at once that it is busy).
    pub fn push(&self, query: StateQuery, reply: Reply) {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if self.closed.load(Ordering::Acquire) {
                drop(queue);
                return reply(ended());
            }
            if queue.len() >= MAX_QUEUED {
                drop(queue);
                return reply(StateAnswer::Failed {
                    why: format!("the task has {MAX_QUEUED} queries waiting; try again"),
                });
            }
            queue.push((query, reply));
        }
        self.pending.store(true, Ordering::Release);
        if let Some(gate) = &self.gate {
            gate.wake();
        }
    }

    /// Whether queries wait (cheap: the task checks at every turn of its loop).
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// The queries waiting.
    pub fn take(&self) -> Vec<(StateQuery, Reply)> {
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn ended() -> StateAnswer {
    StateAnswer::Ended {
        why: "the subtask that owns this key has ended: its state is no longer served".into(),
    }
}

/// A task's hold on its inbox: when the task ends, however it ends, the inbox is closed and
/// whoever waits hears so.
pub struct TaskQueries(pub Arc<QueryInbox>);

impl Drop for TaskQueries {
    fn drop(&mut self) {
        let queue = {
            let mut queue = self.0.queue.lock().unwrap_or_else(|e| e.into_inner());
            self.0.closed.store(true, Ordering::Release);
            std::mem::take(&mut *queue)
        };
        for (_, reply) in queue {
            reply(ended());
        }
    }
}

/// Answers `query` from `state`, operator `query.operator`'s keyed state: the key's value in
/// value state, else its entries in map state (the one of `map_key`, if given).
pub fn answer(state: &mut crate::state::StateBackend, query: &StateQuery) -> StateAnswer {
    let (name, key) = (query.state.as_str(), query.key.as_slice());
    let missing = || StateAnswer::NotFound {
        why: format!(
            "operator `{}` has no value of state `{name}` for this key",
            query.operator
        ),
    };
    let failed = |e: &dyn std::fmt::Display| StateAnswer::Failed {
        why: format!("cannot read state `{name}` of `{}`: {e}", query.operator),
    };
    match state.value_get(name, key) {
        Ok(Some(value)) => return StateAnswer::Value { value },
        Ok(None) => {}
        Err(e) => return failed(&e),
    }
    match state.map_entries(name, key) {
        Ok(entries) if entries.is_empty() => missing(),
        Ok(mut entries) => {
            if let Some(map_key) = &query.map_key {
                entries.retain(|(k, _)| k == map_key);
                if entries.is_empty() {
                    return missing();
                }
            }
            entries.sort();
            StateAnswer::Map { entries }
        }
        Err(e) => failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> StateQuery {
        StateQuery {
            chain: 0,
            subtask: 0,
            operator: "op".into(),
            state: "s".into(),
            key: b"k".to_vec(),
            map_key: None,
        }
    }

    #[test]
    fn an_inbox_is_bounded_and_answers_what_it_drops() {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let reply = |a: &Arc<Mutex<Vec<StateAnswer>>>| -> Reply {
            let a = a.clone();
            Box::new(move |answer| a.lock().unwrap().push(answer))
        };
        let inbox = QueryInbox::new(None);
        for _ in 0..MAX_QUEUED + 1 {
            inbox.push(query(), reply(&answers));
        }
        assert!(inbox.is_pending());
        // The one over the bound was refused at once.
        assert_eq!(answers.lock().unwrap().len(), 1);
        let taken = inbox.take();
        assert_eq!(taken.len(), MAX_QUEUED);
        assert!(!inbox.is_pending());
        inbox.push(query(), reply(&answers));
        drop(TaskQueries(inbox.clone()));
        inbox.push(query(), reply(&answers));
        let answers = answers.lock().unwrap();
        assert_eq!(answers.len(), 3);
        for a in &answers[1..] {
            assert!(matches!(a, StateAnswer::Ended { .. }), "{a:?}");
        }
    }

    #[test]
    fn a_query_reads_value_state_then_map_state() {
        let mut state = crate::state::StateBackend::memory(0..128, 128, 1 << 20, false);
        state
            .value_set_many("count", &[(b"a", Some(b"1"))])
            .unwrap();
        for (mk, v) in [(b"y", b"2"), (b"x", b"1")] {
            state
                .map_put("seen", b"a".to_vec(), mk.to_vec(), v.to_vec())
                .unwrap();
        }
        let ask = |state: &str, key: &[u8], map_key: Option<&[u8]>| StateQuery {
            state: state.into(),
            key: key.to_vec(),
            map_key: map_key.map(<[u8]>::to_vec),
            ..query()
        };
        assert_eq!(
            answer(&mut state, &ask("count", b"a", None)),
            StateAnswer::Value {
                value: b"1".to_vec()
            }
        );
        // Map state: every entry, sorted by map key; or the one asked for.
        assert_eq!(
            answer(&mut state, &ask("seen", b"a", None)),
            StateAnswer::Map {
                entries: vec![
                    (b"x".to_vec(), b"1".to_vec()),
                    (b"y".to_vec(), b"2".to_vec())
                ]
            }
        );
        assert_eq!(
            answer(&mut state, &ask("seen", b"a", Some(b"y"))),
            StateAnswer::Map {
                entries: vec![(b"y".to_vec(), b"2".to_vec())]
            }
        );
        for (name, key, map_key) in [
            ("count", &b"b"[..], None),
            ("nope", b"a", None),
            ("seen", b"a", Some(&b"z"[..])),
        ] {
            assert!(
                matches!(
                    answer(&mut state, &ask(name, key, map_key)),
                    StateAnswer::NotFound { .. }
                ),
                "{name}"
            );
        }
    }
}
