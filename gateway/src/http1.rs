//! Plain HTTP/1.1, as lean as the protocol allows, for the hot paths that
//! talk to a known peer on a trusted network: a keep-alive client
//! connection that posts a JSON body and reads the answer, a small pool of
//! them, and a server loop that hands each request's path and body to a
//! function and writes its JSON answer. The sender uses the pool for a
//! Bot API server reached over plain HTTP (a local `telegram-bot-api`, as
//! large bots run, or a test double); the load generator uses all of it
//! (a load generator should spend its CPU on load, not on itself). Only
//! what these peers send is understood: `Content-Length` or chunked
//! bodies, keep-alive, `Connection: close`. No TLS, no proxies: anything
//! else goes through reqwest.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request or response head read.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Largest body read.
const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// A buffered connection: what was read beyond the last message waits in `buf`.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A message head: its first line, the body length (`None`: chunked),
/// whether the peer closes after it.
struct Head {
    first_line: String,
    content_length: Option<usize>,
    close: bool,
}

impl Wire {
    fn new(stream: TcpStream) -> Self {
        Self { stream, buf: Vec::with_capacity(4096) }
    }

    /// Reads more into `buf`; `UnexpectedEof` when the peer closed.
    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0_u8; 8192];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(chunk.get(..read).unwrap_or_default());
        Ok(())
    }

    /// Reads one head (and removes it from `buf`).
    async fn head(&mut self) -> io::Result<Head> {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|window| window == b"\r\n\r\n") {
                break at;
            }
            if self.buf.len() > HEAD_BYTES_MAX {
                return Err(bad("head too long"));
            }
            self.fill().await?;
        };
        let text = String::from_utf8_lossy(self.buf.get(..end).unwrap_or_default()).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let first_line = lines.next().unwrap_or_default().to_owned();
        let mut head = Head { first_line, content_length: Some(0), close: false };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                head.content_length = Some(value.parse().map_err(|_| bad("content-length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                head.content_length = None;
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                head.close = true;
            }
        }
        Ok(head)
    }

    /// Takes `len` bytes of body from the connection.
    async fn take(&mut self, len: usize) -> io::Result<Vec<u8>> {
        if len > BODY_BYTES_MAX {
            return Err(bad("body too large"));
        }
        while self.buf.len() < len {
            self.fill().await?;
        }
        Ok(self.buf.drain(..len).collect())
    }

    /// Takes one line (without its CRLF).
    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|window| window == b"\r\n") {
                let line = String::from_utf8_lossy(self.buf.get(..at).unwrap_or_default()).into_owned();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            if self.buf.len() > HEAD_BYTES_MAX {
                return Err(bad("line too long"));
            }
            self.fill().await?;
        }
    }

    /// The body after `head`.
    async fn body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if let Some(len) = head.content_length {
            return self.take(len).await;
        }
        let mut body = Vec::new();
        loop {
            let size_line = self.line().await?;
            let size = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad("chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > BODY_BYTES_MAX {
                return Err(bad("body too large"));
            }
            body.extend(self.take(size).await?);
            self.take(2).await?;
        }
    }
}

/// An answer: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A keep-alive client connection to one server; reconnects when the
/// server closed it.
pub struct Client {
    address: SocketAddr,
    host: String,
    wire: Option<Wire>,
}

impl Client {
    /// A client of the server at `address` (connected on first use).
    #[must_use]
    pub fn new(address: SocketAddr) -> Self {
        Self { address, host: address.to_string(), wire: None }
    }

    /// POSTs `body` (JSON) to `path` with `headers` (each `Name: value`);
    /// the response's status and body.
    ///
    /// # Errors
    /// The connection failed or the answer is not HTTP.
    pub async fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<Answer> {
        let wire = match &mut self.wire {
            Some(wire) => wire,
            empty => {
                let stream = TcpStream::connect(self.address).await?;
                stream.set_nodelay(true)?;
                empty.insert(Wire::new(stream))
            }
        };
        let mut request = Vec::with_capacity(256 + body.len());
        request.extend_from_slice(b"POST ");
        request.extend_from_slice(path.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        request.extend_from_slice(self.host.as_bytes());
        request.extend_from_slice(b"\r\nContent-Type: application/json\r\n");
        for (name, value) in headers {
            request.extend_from_slice(name.as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        let answer = async {
            wire.stream.write_all(&request).await?;
            let head = wire.head().await?;
            let body = wire.body(&head).await?;
            let status: u16 =
                head.first_line.split(' ').nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| bad("status"))?;
            Ok::<_, io::Error>((Answer { status, body }, head.close))
        };
        match answer.await {
            Ok((answer, close)) => {
                if close {
                    self.wire = None;
                }
                Ok(answer)
            }
            Err(error) => {
                self.wire = None;
                Err(error)
            }
        }
    }
}

/// Connections kept open to one server, each carrying one request at a time.
pub struct Pool {
    address: SocketAddr,
    idle: std::sync::Mutex<Vec<Client>>,
    idle_max: usize,
}

impl Pool {
    /// A pool for the server at `address`, keeping at most `idle_max`
    /// connections open while unused.
    #[must_use]
    pub fn new(address: SocketAddr, idle_max: usize) -> Self {
        Self { address, idle: std::sync::Mutex::new(Vec::new()), idle_max }
    }

    /// [`Client::post`] on an idle connection, or a new one.
    ///
    /// # Errors
    /// As `Client::post`.
    pub async fn post(&self, path: &str, body: &[u8]) -> io::Result<Answer> {
        let idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let mut client = idle.unwrap_or_else(|| Client::new(self.address));
        let answer = client.post(path, &[], body).await?;
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.idle_max {
            idle.push(client);
        }
        Ok(answer)
    }
}

/// How many connections may wait to be accepted. A thousand players (or a
/// Bot API client's burst of new connections) arrive at once; the OS's
/// usual 128 overflows, and a dropped SYN is sent again only a second,
/// then three, then seven seconds later.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on the first of `addresses` that binds, with
/// [`LISTEN_BACKLOG`] (the kernel caps it at `net.core.somaxconn`).
/// Must run inside a tokio runtime.
///
/// # Errors
/// None of `addresses` could be bound (the last error), or there were none.
pub fn listen(addresses: impl IntoIterator<Item = SocketAddr>) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
    for address in addresses {
        let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() };
        let bound = socket.and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(address)?;
            socket.listen(LISTEN_BACKLOG)
        });
        match bound {
            Ok(listener) => return Ok(listener),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Serves `listener`: each request's path and body go to `answer`, whose
/// JSON goes back with status 200. Runs until the listener fails.
pub async fn serve<F>(listener: TcpListener, answer: F)
where
    F: Fn(&str, &[u8]) -> Vec<u8> + Clone + 'static,
{
    while let Ok((stream, _)) = listener.accept().await {
        let answer = answer.clone();
        tokio::task::spawn_local(async move {
            let _ = stream.set_nodelay(true);
            let mut wire = Wire::new(stream);
            while let Ok(head) = wire.head().await {
                let Ok(body) = wire.body(&head).await else { return };
                let path = head.first_line.split(' ').nth(1).unwrap_or_default();
                let json = answer(path, &body);
                let mut response = Vec::with_capacity(128 + json.len());
                response.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n");
                response.extend_from_slice(format!("Content-Length: {}\r\n\r\n", json.len()).as_bytes());
                response.extend_from_slice(&json);
                if wire.stream.write_all(&response).await.is_err() || head.close {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_and_the_server_keep_one_connection_alive() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let address = listener.local_addr().unwrap();
                tokio::task::spawn_local(serve(listener, |path: &str, body: &[u8]| {
                    format!(r#"{{"path":"{path}","len":{}}}"#, body.len()).into_bytes()
                }));
                let mut client = Client::new(address);
                for round in 0..3 {
                    let body = vec![b'x'; round * 1000];
                    let answer = client.post("/a/b", &[("X-Test", "1")], &body).await.unwrap();
                    assert_eq!(answer.status, 200);
                    assert_eq!(answer.body, format!(r#"{{"path":"/a/b","len":{}}}"#, round * 1000).into_bytes());
                }
                let pool = Pool::new(address, 2);
                let answers = futures_util::future::join_all((0..5).map(|_| pool.post("/p", b"{}"))).await;
                assert!(answers.iter().all(|answer| answer.as_ref().is_ok_and(|answer| answer.status == 200)));
                assert!(pool.idle.lock().unwrap().len() <= 2);
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn chunked_bodies_are_read_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut wire = Wire::new(stream);
            let head = wire.head().await.unwrap();
            wire.body(&head).await.unwrap()
        });
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(
                b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
            )
            .await
            .unwrap();
        assert_eq!(server.await.unwrap(), b"hello world");
    }
}
