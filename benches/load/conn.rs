//! The generator's HTTP/1.1 client. Every request of a step is encoded to its wire bytes before
//! the step starts and written as is on a kept-alive loopback connection; the answer's head is
//! read with `httparse`. Nothing is parsed, signed, or allocated per request beyond the answer's
//! body, so the generator's CPU goes to the socket calls, not to a client library's pool,
//! header maps and URL handling.

use std::net::SocketAddr;
use std::sync::Mutex;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::driver::{Method, Req};

/// Headers an answer may carry (actix-web sends a handful).
const MAX_HEADERS: usize = 32;
/// An answer larger than this is an error (the engine's answers are a few KiB at most).
const MAX_ANSWER: usize = 4 << 20;

/// A request on the wire, and what the step counts for it.
pub struct Prepared {
    pub bytes: Vec<u8>,
    pub ops: u64,
    pub webhook: bool,
}

/// Encodes `req` as HTTP/1.1; answers the address it goes to.
pub fn prepare(req: &Req) -> anyhow::Result<(SocketAddr, Prepared)> {
    let url = url::Url::parse(&req.url).with_context(|| format!("request url {}", req.url))?;
    let addr = url
        .socket_addrs(|| None)?
        .into_iter()
        .next()
        .context("request url without an address")?;
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let method = match req.method {
        Method::Get => "GET",
        Method::Post => "POST",
    };
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in &req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = req.body.as_deref().unwrap_or_default();
    if req.body.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Ok((
        addr,
        Prepared {
            bytes,
            ops: req.ops,
            webhook: req.webhook,
        },
    ))
}

/// Why an exchange produced no answer.
pub enum Failure {
    Connect,
    Transport,
}

/// One kept-alive connection and its read buffer.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// An answer: its status and body; `reusable` is false when the server closes the connection.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub reusable: bool,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn, Failure> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|_| Failure::Connect)?;
        stream.set_nodelay(true).map_err(|_| Failure::Connect)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(8 << 10),
        })
    }

    /// Whether the server has neither closed the connection nor written anything on it since
    /// its last answer. An idle connection can hold an answer nobody asked for: a server times
    /// out a connection that never sent a request (actix-web answers 408 after 5 s) and closes
    /// it. Sending on it would read that answer as the request's.
    fn untouched(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(
            self.stream.try_read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    /// Writes one request and reads its answer (sized bodies only: the engine sends no chunked
    /// answers to these requests).
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Answer, Failure> {
        self.stream
            .write_all(request)
            .await
            .map_err(|_| Failure::Transport)?;
        self.buf.clear();
        loop {
            if self.buf.len() > MAX_ANSWER {
                return Err(Failure::Transport);
            }
            if self.buf.capacity() - self.buf.len() < 4 << 10 {
                self.buf.reserve(8 << 10);
            }
            let read = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|_| Failure::Transport)?;
            if read == 0 {
                return Err(Failure::Transport);
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut head = httparse::Response::new(&mut headers);
            let head_len = match head.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => continue,
                Err(_) => return Err(Failure::Transport),
            };
            let status = head.code.ok_or(Failure::Transport)?;
            let header = |name: &str| {
                head.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value)
            };
            let length: usize = header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
                .ok_or(Failure::Transport)?;
            let reusable = !header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
            let end = head_len + length;
            while self.buf.len() < end {
                if end > MAX_ANSWER {
                    return Err(Failure::Transport);
                }
                self.buf.reserve(end - self.buf.len());
                let read = self
                    .stream
                    .read_buf(&mut self.buf)
                    .await
                    .map_err(|_| Failure::Transport)?;
                if read == 0 {
                    return Err(Failure::Transport);
                }
            }
            return Ok(Answer {
                status,
                body: self.buf[head_len..end].to_vec(),
                reusable,
            });
        }
    }
}

/// Idle connections to one address; a request takes one (or opens one) and gives it back.
pub struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    /// A pool with `warm` connections already open, so a step's first requests do not pay for
    /// connecting.
    pub async fn new(addr: SocketAddr, warm: usize) -> Pool {
        let mut idle = Vec::with_capacity(warm);
        for _ in 0..warm {
            if let Ok(conn) = Conn::connect(addr).await {
                idle.push(conn);
            }
        }
        Pool {
            addr,
            idle: Mutex::new(idle),
        }
    }

    /// Sends one prepared request on an idle connection or a new one.
    pub async fn send(&self, request: &[u8]) -> Result<Answer, Failure> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .filter(Conn::untouched);
        let (conn, answer) = match taken {
            Some(mut conn) => match conn.exchange(request).await {
                Ok(answer) => (conn, answer),
                // The server may have closed an idle connection (keep-alive timeout): once more
                // on a new one.
                Err(_) => {
                    let mut conn = Conn::connect(self.addr).await?;
                    let answer = conn.exchange(request).await?;
                    (conn, answer)
                }
            },
            None => {
                let mut conn = Conn::connect(self.addr).await?;
                let answer = conn.exchange(request).await?;
                (conn, answer)
            }
        };
        if answer.reusable {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
        Ok(answer)
    }
}
