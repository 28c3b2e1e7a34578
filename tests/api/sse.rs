//! A minimal server-sent-events reader for the stream tests, written from the format's rules
//! (frames end with a blank line; `id:`, `event:`, `data:` fields; `:` starts a comment),
//! independent of the server's own framing code.

use std::time::Duration;

use reqwest::Response;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Event {
        id: Option<i64>,
        event: String,
        data: Value,
    },
    Comment(String),
}

impl Frame {
    pub fn id(&self) -> Option<i64> {
        match self {
            Frame::Event { id, .. } => *id,
            Frame::Comment(_) => None,
        }
    }
}

pub struct Sse {
    body: Response,
    buffer: Vec<u8>,
}

fn parse(block: &str) -> Frame {
    let (mut id, mut event, mut data, mut comment) = (None, String::new(), String::new(), None);
    for line in block.lines() {
        if let Some(text) = line.strip_prefix(':') {
            comment = Some(text.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().unwrap());
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        } else {
            panic!("unexpected line in an event stream: {line:?}");
        }
    }
    match comment {
        Some(text) if event.is_empty() && data.is_empty() => Frame::Comment(text),
        _ => Frame::Event {
            id,
            event,
            data: serde_json::from_str(&data).unwrap(),
        },
    }
}

impl Sse {
    pub fn new(response: Response) -> Sse {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse {
            body: response,
            buffer: Vec::new(),
        }
    }

    /// The next frame; `None` when the server ended the stream. Panics after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(parse(std::str::from_utf8(&block).unwrap().trim_end()));
            }
            let chunk = tokio::time::timeout(wait, self.body.chunk())
                .await
                .expect("no frame in time");
            match chunk {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                Err(e) => panic!("stream broke: {e}"),
                Ok(None) => {
                    assert!(self.buffer.is_empty(), "stream ended mid-frame");
                    return None;
                }
            }
        }
    }

    /// The next `n` event frames, skipping comments.
    pub async fn events(&mut self, n: usize) -> Vec<Frame> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            match self.next(Duration::from_secs(5)).await {
                Some(frame @ Frame::Event { .. }) => events.push(frame),
                Some(Frame::Comment(_)) => {}
                None => panic!("stream ended after {} of {n} events", events.len()),
            }
        }
        events
    }

    /// Nothing but comments arrives for `quiet`.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(left, self.next(quiet * 2)).await {
                Err(_) => return,
                Ok(Some(Frame::Comment(_))) => {}
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }
}
