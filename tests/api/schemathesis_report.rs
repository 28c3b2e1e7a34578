//! What the Schemathesis runs of `openapi_tools.rs` report: their NDJSON event logs read back
//! (operations selected, examples fuzzed, scenarios run) and the answers they got, by operation.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// The answers runs got, by operation label (`GET /api/invoices`) and status code: every
/// request sent, generated or derived by a check, in every phase.
#[derive(Default)]
pub struct Responses(BTreeMap<String, BTreeMap<u16, u32>>);

impl Responses {
    pub fn add(&mut self, other: Responses) {
        for (label, statuses) in other.0 {
            let mine = self.0.entry(label).or_default();
            for (status, n) in statuses {
                *mine.entry(status).or_default() += n;
            }
        }
    }

    /// 2xx answers to an operation.
    pub fn successes(&self, document: &Value, operation_id: &str) -> u32 {
        self.0
            .iter()
            .filter(|(label, _)| operation(document, label)["operationId"] == operation_id)
            .flat_map(|(_, statuses)| statuses.iter())
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, n)| n)
            .sum()
    }

    /// One line per operation: its id, its 2xx answers, then how many of each status it got;
    /// last, the answers to methods the document does not list (the coverage phase's 405s).
    pub fn summary(&self, document: &Value) -> String {
        let mut by_id = BTreeMap::<&str, BTreeMap<u16, u32>>::new();
        for (label, statuses) in &self.0 {
            let id = operation(document, label)["operationId"]
                .as_str()
                .unwrap_or("(undocumented methods)");
            let line = by_id.entry(id).or_default();
            for (status, n) in statuses {
                *line.entry(*status).or_default() += n;
            }
        }
        let undocumented = by_id.remove_entry("(undocumented methods)");
        by_id
            .into_iter()
            .chain(undocumented)
            .map(|(id, statuses)| {
                let ok: u32 = statuses
                    .iter()
                    .filter(|(status, _)| (200..300).contains(*status))
                    .map(|(_, n)| n)
                    .sum();
                let each: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect();
                format!("  {id:<30} 2xx {ok:>5}   {}", each.join(" "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What a run reports in its NDJSON event log: how many operations it selected, the examples it
/// generated for each (by label, `GET /api/invoices`) in the fuzzing phase, the scenarios it
/// ran in the stateful phase, and the answers it got.
#[derive(Default)]
pub struct Report {
    pub selected: u32,
    pub fuzzed: BTreeMap<String, u32>,
    pub scenarios: u32,
    pub responses: Responses,
}

#[derive(Deserialize)]
enum Event {
    LoadingFinished {
        statistic: Statistic,
    },
    ScenarioFinished {
        phase: String,
        status: String,
        recorder: Recorder,
    },
}

#[derive(Deserialize)]
struct Statistic {
    operations: Selected,
}

#[derive(Deserialize)]
struct Selected {
    selected: u32,
}

#[derive(Deserialize)]
struct Recorder {
    label: Option<String>,
    #[serde(default)]
    cases: HashMap<String, RecordedCase>,
    /// Requests sent and their answers, by case id.
    #[serde(default)]
    interactions: HashMap<String, Interaction>,
}

/// A request of a scenario: a generated example, or one a check derived from it (`parent_id`).
#[derive(Deserialize)]
struct RecordedCase {
    parent_id: Option<String>,
    value: Case,
}

/// The operation a case is of: its method and path template.
#[derive(Deserialize)]
struct Case {
    method: String,
    path: String,
}

#[derive(Deserialize)]
struct Interaction {
    /// None when no answer came (a timeout, a refused connection).
    response: Option<Answer>,
}

#[derive(Deserialize)]
struct Answer {
    status_code: u16,
}

pub fn read_report(dir: &Path) -> Report {
    let mut report = Report::default();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ndjson") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if !line.starts_with(r#"{"LoadingFinished""#)
                && !line.starts_with(r#"{"ScenarioFinished""#)
            {
                continue;
            }
            match serde_json::from_str(line).unwrap() {
                Event::LoadingFinished { statistic } => {
                    report.selected = statistic.operations.selected;
                }
                Event::ScenarioFinished {
                    phase,
                    status,
                    recorder,
                } => {
                    for (id, case) in &recorder.cases {
                        let Some(answer) = recorder
                            .interactions
                            .get(id)
                            .and_then(|i| i.response.as_ref())
                        else {
                            continue;
                        };
                        let label = format!("{} {}", case.value.method, case.value.path);
                        *report
                            .responses
                            .0
                            .entry(label)
                            .or_default()
                            .entry(answer.status_code)
                            .or_default() += 1;
                    }
                    match phase.as_str() {
                        "fuzzing" => {
                            let examples = recorder
                                .cases
                                .values()
                                .filter(|c| c.parent_id.is_none())
                                .count();
                            *report
                                .fuzzed
                                .entry(recorder.label.unwrap_or_default())
                                .or_default() += u32::try_from(examples).unwrap();
                        }
                        "stateful" if status != "skip" => report.scenarios += 1,
                        _ => {}
                    }
                }
            }
        }
    }
    report
}

/// The operation a label (`GET /api/invoices/{id}`) names in the document.
pub fn operation<'a>(document: &'a Value, label: &str) -> &'a Value {
    let (method, path) = label.split_once(' ').unwrap();
    &document["paths"][path][method.to_lowercase()]
}
