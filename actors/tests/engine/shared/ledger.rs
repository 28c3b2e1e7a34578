//! What each tenant was told: every answer to every payment and refund, keyed or not, and the
//! checks that the durable state agrees with them ("no false success", nothing done twice).

use std::collections::{HashMap, HashSet};

use payrail_actors::domain::{PaymentId, RefundId};
use payrail_actors::ports::IdempotencyRecord;

use super::check::View;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Acknowledged, with the id of what it made.
    Fresh(String),
    /// Acknowledged by replaying the stored response (its body is the id).
    Replayed(String),
    /// Refused or failed with nothing done.
    NoEffect(String),
    /// Failed with an unknown outcome (a lost reply, an actor gone before answering).
    Unknown(String),
}

impl Answer {
    fn id(&self) -> Option<&str> {
        match self {
            Self::Fresh(id) | Self::Replayed(id) => Some(id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct KeyedRun {
    kind: String,
    key: String,
    concurrent: bool,
    answers: Vec<Answer>,
}

#[derive(Debug, Default)]
pub struct Ledger {
    /// Webhook events the engine said it applied.
    pub applied: usize,
    payments: Vec<PaymentId>,
    keyed: Vec<KeyedRun>,
    unkeyed: Vec<(String, Answer)>,
}

impl Ledger {
    /// Payments acknowledged so far, for later operations to target.
    pub fn payments(&self) -> &[PaymentId] {
        &self.payments
    }

    fn learn(&mut self, kind: &str, answer: &Answer) {
        if kind == "pay" {
            if let Some(id) = answer.id().and_then(|id| id.parse().ok()) {
                if !self.payments.contains(&id) {
                    self.payments.push(id);
                }
            }
        }
    }

    pub fn unkeyed(&mut self, kind: &str, answer: Answer) {
        self.learn(kind, &answer);
        self.unkeyed.push((kind.into(), answer));
    }

    pub fn keyed(&mut self, kind: &str, key: String, concurrent: bool, answers: Vec<Answer>) {
        answers.iter().for_each(|a| self.learn(kind, a));
        self.keyed.push(KeyedRun {
            kind: kind.into(),
            key,
            concurrent,
            answers,
        });
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keyed.iter().map(|run| run.key.as_str())
    }

    /// Every acknowledged operation is durable, every one that failed with nothing done left
    /// nothing, a key never acted twice, and whatever the log holds is explained by an answer.
    pub fn verify(&self, view: &View, records: &HashMap<String, Option<IdempotencyRecord>>) {
        let refunds: HashMap<RefundId, PaymentId> = view
            .payments
            .values()
            .flat_map(|p| p.refunds.iter().map(|r| (r.id, p.id)))
            .collect();
        let exists = |kind: &str, id: &str| match kind {
            "refund" => id
                .parse()
                .is_ok_and(|id: RefundId| refunds.contains_key(&id)),
            _ => id
                .parse()
                .is_ok_and(|id: PaymentId| view.payments.contains_key(&id)),
        };
        let mut named: HashSet<String> = HashSet::new();
        for run in &self.keyed {
            let context = format!("key {} ({}): {:?}", run.key, run.kind, run.answers);
            let ids: HashSet<&str> = run.answers.iter().filter_map(Answer::id).collect();
            assert!(ids.len() <= 1, "one key, several effects; {context}");
            let fresh = run
                .answers
                .iter()
                .filter(|a| matches!(a, Answer::Fresh(_)))
                .count();
            assert!(fresh <= 1, "a retry acted again; {context}");
            let record = records.get(&run.key).cloned().flatten();
            if run.kind == "foreign-pay" {
                assert!(
                    ids.is_empty() && record.is_none(),
                    "paid another tenant's invoice; {context}"
                );
            }
            if let Some(id) = ids.iter().next() {
                let stored = record.as_ref().map(|r| r.body.as_str());
                assert_eq!(stored, Some(*id), "acknowledged, not durable; {context}");
            }
            if run.answers.iter().all(|a| matches!(a, Answer::NoEffect(_))) {
                assert!(record.is_none(), "failed, yet took effect; {context}");
            }
            if !run.concurrent {
                // The first acknowledgement replays only what an attempt of unknown outcome did.
                let first = run.answers.iter().position(|a| a.id().is_some());
                if let Some(i) = first.filter(|&i| matches!(run.answers[i], Answer::Replayed(_))) {
                    assert!(
                        run.answers[..i]
                            .iter()
                            .any(|a| matches!(a, Answer::Unknown(_))),
                        "an attempt answered as failed had taken effect; {context}"
                    );
                }
            }
            if let Some(record) = record {
                assert!(
                    exists(&run.kind, &record.body),
                    "record without its effect; {context}"
                );
                named.insert(record.body);
            }
        }
        for (kind, answer) in &self.unkeyed {
            if kind == "foreign-pay" {
                assert!(
                    matches!(answer, Answer::NoEffect(_)),
                    "paid another tenant's invoice: {answer:?}"
                );
            }
            if let Some(id) = answer.id() {
                assert!(exists(kind, id), "acknowledged {kind} {id} lost");
            }
        }
        // Whatever no key explains must be explained by an unkeyed answer.
        for (kind, found) in [
            (
                "pay",
                view.payments
                    .keys()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>(),
            ),
            ("refund", refunds.keys().map(|r| r.to_string()).collect()),
        ] {
            let unexplained = found.iter().filter(|id| !named.contains(*id)).count();
            let possible = self
                .unkeyed
                .iter()
                .filter(|(k, a)| k == kind && !matches!(a, Answer::NoEffect(_)))
                .count();
            assert!(
                unexplained <= possible,
                "{unexplained} {kind} effects in the log, {possible} possible; {:?}",
                self.unkeyed
            );
        }
    }
}
