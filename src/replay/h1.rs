//! A lean HTTP/1.1 client connection for replay and the live shadow: the request head is
//! written as bytes straight from the recording (no header map, no request object, no
//! connection task), the answer is parsed with `httparse` from one read buffer, and a body
//! framed by `content-length` is cut out of that buffer without a copy.
//!
//! Replay holds whole answers anyway (it compares them), so the streaming, the generic
//! bodies and the per-connection task of a general client cost without giving anything
//! back; this is where most of replay's user-space time per request went. What it still
//! does, because servers do it: informational (1xx) answers are skipped, bodies are framed
//! by `transfer-encoding: chunked` (trailers kept), `content-length` or the end of the
//! connection (RFC 9112 section 6.3), and an answer that comes before the request body has
//! gone out (a 413 to an upload) is read at once and the connection given up.
//!
//! The connection is plain TCP or TLS over it ([`crate::tls`]); the exchange is one generic
//! function over the two halves, so the plain path is compiled as it was without TLS.

use crate::http1::framing::{BodyFields, Framing, Mode};
use crate::http1::ChunkedDecoder;
use crate::tls::{TlsReason, TlsStream};
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Largest response head accepted (status line and header fields).
pub const MAX_HEAD: usize = 256 * 1024;
/// A read buffer grown past this (by a large answer) is not kept on an idle connection.
const KEEP_BUFFER: usize = 64 * 1024;
/// Most header fields in one response head.
const MAX_FIELDS: usize = 128;

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Header fields in wire order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Trailer fields of a chunked body, names lower-cased.
    pub trailers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Bytes,
    /// Whether the connection may carry another request.
    pub reusable: bool,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum H1Error {
    /// The connection broke or closed before the answer was complete.
    Io {
        /// What happened.
        message: String,
        /// No byte of an answer had arrived: on a kept-alive connection the server may
        /// have closed it just as the request went out.
        nothing_received: bool,
        /// Writing the request failed, so the server never had all of it.
        unsent: bool,
    },
    /// The answer is not valid HTTP/1.
    Malformed(String),
    /// The answer's body is larger than the limit.
    TooLarge(String),
    /// TLS failed after the handshake seemed done: under TLS 1.3 a server refuses a client
    /// certificate with an alert the client reads with the first answer.
    Tls(TlsReason, String),
}

impl H1Error {
    /// A broken connection; [`H1Conn::exchange`] fills in what had arrived and gone out.
    fn io(e: io::Error) -> Self {
        if let Some((reason, message)) = crate::tls::classify(&e) {
            return H1Error::Tls(reason, message);
        }
        H1Error::Io {
            message: format!("connection error: {e}"),
            nothing_received: false,
            unsent: false,
        }
    }

    fn closed(what: &str) -> Self {
        H1Error::Io {
            message: format!("connection closed before {what}"),
            nothing_received: false,
            unsent: false,
        }
    }
}

/// What an [`H1Conn`] talks over.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: its buffers are large, and plain connections need not carry
    /// the room).
    Tls(Box<TlsStream>),
}

/// One HTTP/1.1 connection to a server.
#[derive(Debug)]
pub struct H1Conn {
    stream: Stream,
    rbuf: BytesMut,
}

impl H1Conn {
    /// Connects to `authority` (`host:port`) with Nagle off (requests are written whole).
    pub async fn connect(authority: &str) -> io::Result<H1Conn> {
        let stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        Ok(H1Conn::over(Stream::Plain(stream)))
    }

    /// A connection over a stream already connected (and, for TLS, past its handshake).
    pub fn over(stream: Stream) -> H1Conn {
        H1Conn {
            stream,
            rbuf: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// Whether the server closed this idle connection (or sent something nobody asked
    /// for). The runtime records readiness from the poller, so while nothing arrived this
    /// costs no system call.
    pub fn is_stale(&mut self) -> bool {
        match &mut self.stream {
            Stream::Plain(s) => {
                let mut probe = [0u8; 1];
                !matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            // TLS has records that carry no data (a session ticket, a key update), so the
            // socket having bytes says nothing: one read is tried, and only "nothing yet"
            // means the connection is still good. The read's waker is never woken; the next
            // real read registers its own.
            Stream::Tls(s) => {
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(Waker::noop());
                !matches!(
                    Pin::new(&mut **s).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
        }
    }

    /// Writes `head` (a complete request head) and `body`, and reads the whole answer.
    /// `head_request` says the answer has no body whatever its headers say. The answer is
    /// read while the request is still being written, so a server that answers before it
    /// has read an upload is heard at once (the connection is then not reused).
    pub async fn exchange(
        &mut self,
        head: &[u8],
        body: &Bytes,
        head_request: bool,
        max_body: usize,
    ) -> Result<Answer, H1Error> {
        let outcome = match &mut self.stream {
            Stream::Plain(s) => {
                let (rd, wr) = s.split();
                exchange_on(rd, wr, &mut self.rbuf, head, body, head_request, max_body).await
            }
            Stream::Tls(s) => {
                let (rd, wr) = tokio::io::split(&mut **s);
                exchange_on(rd, wr, &mut self.rbuf, head, body, head_request, max_body).await
            }
        };
        // A large answer leaves a large buffer behind; an idle connection need not keep it.
        if self.rbuf.capacity() > KEEP_BUFFER {
            self.rbuf = BytesMut::with_capacity(8 * 1024);
        }
        outcome
    }
}

/// [`H1Conn::exchange`] over a connection's two halves.
async fn exchange_on<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut rd: R,
    mut wr: W,
    rbuf: &mut BytesMut,
    head: &[u8],
    body: &Bytes,
    head_request: bool,
    max_body: usize,
) -> Result<Answer, H1Error> {
    let mut received = false;
    let mut written = false;
    let outcome = 'done: {
        // One vectored write for head and body together; the flush is nothing on TCP, and
        // sends what TLS still holds.
        let write = async {
            let mut request = Buf::chain(head, &body[..]);
            wr.write_all_buf(&mut request).await?;
            wr.flush().await
        };
        let read = read_answer(&mut rd, rbuf, head_request, max_body, &mut received);
        tokio::pin!(write, read);
        let failed = loop {
            tokio::select! {
                biased;
                w = &mut write, if !written => match w {
                    Ok(()) => written = true,
                    Err(e) => break e,
                },
                r = &mut read => break 'done r,
            }
        };
        // The server may have answered and closed without reading the whole request:
        // its answer is what counts, if one comes.
        match tokio::time::timeout(std::time::Duration::from_millis(50), &mut read).await {
            Ok(r) => r,
            Err(_) => Err(H1Error::io(failed)),
        }
    };
    match outcome {
        Ok(mut a) => {
            a.reusable &= written;
            Ok(a)
        }
        // What the read saw decides, but not whether anything arrived: that is known
        // only now, and a request not all written is one the server never had whole.
        Err(H1Error::Io { message, .. }) => Err(H1Error::Io {
            message,
            nothing_received: !received,
            unsent: !written,
        }),
        Err(e) => Err(e),
    }
}

/// What a response head says about its body and connection.
struct HeadInfo {
    status: u16,
    headers: Vec<(String, String)>,
    framing: Framing,
    reusable: bool,
}

/// Reads one answer, skipping informational ones.
/// Sets `received` as soon as any byte arrives.
async fn read_answer<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    head_request: bool,
    max_body: usize,
    received: &mut bool,
) -> Result<Answer, H1Error> {
    let info = loop {
        let (len, info) = loop {
            if !buf.is_empty() {
                if let Some(parsed) = parse_head(buf, head_request)? {
                    break parsed;
                }
                if buf.len() > MAX_HEAD {
                    return Err(H1Error::Malformed(format!(
                        "response head larger than {} KiB",
                        MAX_HEAD / 1024
                    )));
                }
            }
            fill(rd, buf, 8 * 1024, received, "the response head").await?;
        };
        buf.advance(len);
        // 101 ends HTTP/1 on this connection; other 1xx precede the real answer.
        if (100..200).contains(&info.status) && info.status != 101 {
            continue;
        }
        break info;
    };
    let mut reusable = info.reusable;
    let mut trailers = Vec::new();
    let body = match info.framing {
        Framing::Empty => Bytes::new(),
        Framing::Length(n) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > max_body {
                return Err(too_large(max_body));
            }
            while buf.len() < n {
                let want = n - buf.len();
                fill(rd, buf, want, received, "the whole body").await?;
            }
            buf.split_to(n).freeze()
        }
        Framing::Chunked => read_chunked(rd, buf, max_body, &mut trailers, received).await?,
        Framing::UntilClose => {
            reusable = false;
            loop {
                if buf.len() > max_body {
                    return Err(too_large(max_body));
                }
                buf.reserve(16 * 1024);
                match rd.read_buf(buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(H1Error::io(e)),
                }
            }
            buf.split().freeze()
        }
    };
    // Bytes nobody asked for would be taken as the next answer's start.
    if !buf.is_empty() {
        reusable = false;
    }
    Ok(Answer {
        status: info.status,
        headers: info.headers,
        trailers,
        body,
        reusable,
    })
}

/// Reads at least one more byte into `buf`, reserving `want`.
async fn fill<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    want: usize,
    received: &mut bool,
    what: &str,
) -> Result<(), H1Error> {
    buf.reserve(want.clamp(1, 256 * 1024));
    match rd.read_buf(buf).await {
        Ok(0) => Err(H1Error::closed(what)),
        Ok(_) => {
            *received = true;
            Ok(())
        }
        Err(e) => Err(H1Error::io(e)),
    }
}

fn too_large(max_body: usize) -> H1Error {
    H1Error::TooLarge(format!("body larger than {max_body} bytes (--max-body)"))
}

/// Parses a response head at the start of `buf`: `None` while incomplete.
fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<(usize, HeadInfo)>, H1Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(H1Error::Malformed(format!(
                "more than {MAX_FIELDS} header fields in the response"
            )))
        }
        Err(e) => return Err(H1Error::Malformed(format!("not an HTTP/1 response: {e}"))),
    };
    let status = resp.code.unwrap_or_default();
    if status < 100 {
        return Err(H1Error::Malformed(format!("status {status} is not valid")));
    }
    let http11 = resp.version == Some(1);
    let mut headers = Vec::with_capacity(resp.headers.len());
    let mut body = BodyFields::default();
    for f in resp.headers.iter() {
        let name = f.name.to_ascii_lowercase();
        body.field(&name, f.value);
        headers.push((name, String::from_utf8_lossy(f.value).into_owned()));
    }
    let (framing, reusable) = body
        .answer(status, head_request, false, http11)
        .map_err(H1Error::Malformed)?;
    Ok(Some((
        len,
        HeadInfo {
            status,
            headers,
            framing,
            reusable,
        },
    )))
}

/// Reads a chunked body (and its trailers) out of `buf`, reading more as needed.
async fn read_chunked<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max_body: usize,
    trailers: &mut Vec<(String, String)>,
    received: &mut bool,
) -> Result<Bytes, H1Error> {
    let mut chunks = ChunkedDecoder::new(Mode::Strict);
    let mut body = BytesMut::new();
    let mut data = Vec::new();
    loop {
        data.clear();
        let (used, done) = chunks
            .feed(buf, &mut data)
            .map_err(|e| H1Error::Malformed(e.message))?;
        // The chunk announced is refused before it is read, not once it has been.
        let coming: usize = data.iter().map(|r| r.len()).sum();
        let left = usize::try_from(chunks.chunk_left()).unwrap_or(usize::MAX);
        if body.len() + coming > max_body || left > max_body - body.len() - coming {
            return Err(too_large(max_body));
        }
        for r in &data {
            body.extend_from_slice(&buf[r.clone()]);
        }
        buf.advance(used);
        if done {
            for (name, value) in chunks.trailer_fields() {
                trailers.push((
                    String::from_utf8_lossy(name).to_ascii_lowercase(),
                    String::from_utf8_lossy(value).into_owned(),
                ));
            }
            return Ok(body.freeze());
        }
        let want = left.clamp(1024, 256 * 1024);
        fill(rd, buf, want, received, "the end of the chunked body").await?;
    }
}

/// The characters of a token (RFC 9110 section 5.6.2): methods and field names.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Whether `s` can be sent as a field value: no control characters but tab.
pub fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A connection to a server that, for each of `answers`, reads one request head and
    /// writes the answer in pieces of `piece` bytes, then holds the connection open.
    async fn scripted(answers: Vec<Vec<u8>>, piece: usize) -> H1Conn {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            for answer in answers {
                let mut got = Vec::new();
                let mut b = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut b).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&b[..n]);
                }
                for p in answer.chunks(piece) {
                    s.write_all(p).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        H1Conn::connect(&addr).await.unwrap()
    }

    /// A GET (a HEAD when `head_request`) on `c`, with the 1 KiB body limit most tests use.
    async fn get_on(c: &mut H1Conn, head_request: bool) -> Result<Answer, H1Error> {
        c.exchange(&get(), &Bytes::new(), head_request, 1024).await
    }

    fn get() -> Vec<u8> {
        b"GET / HTTP/1.1\r\nhost: t\r\n\r\n".to_vec()
    }

    #[tokio::test]
    async fn length_chunked_and_informational_answers_are_read_whole() {
        for piece in [1, 7, 4096] {
            let mut c = scripted(
                vec![
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello".to_vec(),
                    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\ngrpc-status: 0\r\n\r\n".to_vec(),
                ],
                piece,
            ).await;
            let a = get_on(&mut c, false).await.unwrap();
            assert_eq!(a.status, 200);
            assert_eq!(&a.body[..], b"hello");
            assert_eq!(
                a.headers,
                [
                    ("content-length".into(), "5".into()),
                    ("x-a".into(), "1".into())
                ]
            );
            assert!(a.reusable, "piece {piece}");
            let a = get_on(&mut c, false).await.unwrap();
            assert_eq!(a.status, 201);
            assert_eq!(&a.body[..], b"abcde");
            assert_eq!(a.trailers, [("grpc-status".into(), "0".into())]);
            assert!(a.reusable);
        }
    }

    #[tokio::test]
    async fn bodies_end_at_close_when_unframed_and_head_answers_have_none() {
        let mut c = scripted(
            vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".to_vec(),
                b"HTTP/1.0 200 OK\r\n\r\nuntil the end".to_vec(),
            ],
            4096,
        )
        .await;
        let a = get_on(&mut c, true).await.unwrap();
        assert_eq!((a.status, a.body.len(), a.reusable), (200, 0, true));
        // HTTP/1.0 without keep-alive: the body runs to the end of the connection, which
        // the scripted server holds open until the client gives up its side.
        let read = get_on(&mut c, false);
        let r = tokio::time::timeout(std::time::Duration::from_millis(300), read).await;
        assert!(
            r.is_err(),
            "an unframed body must wait for the close: {r:?}"
        );
    }

    #[tokio::test]
    async fn bad_heads_bad_lengths_and_large_bodies_are_refused() {
        for (answer, want) in [
            (&b"NOT HTTP AT ALL\r\n\r\n"[..], "malformed"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "malformed"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
                "malformed",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nab",
                "malformed",
            ),
            (
                b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
                "malformed",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;ext\r\n\r\n",
                "malformed",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n",
                "too_large",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "malformed",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n",
                "too_large",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
                "closed",
            ),
            // Framing lines end in CRLF: a bare LF is where parsers disagree about where a
            // chunk, and so the next answer, starts.
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x\nAAAA\r\nhello\r\n0\r\n\r\n",
                "malformed",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
                "malformed",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx-t: 1\n\n",
                "malformed",
            ),
        ] {
            let answer = answer.to_vec();
            let addr = serve_once(|mut s| async move { s.write_all(&answer).await.unwrap() }).await;
            let mut c = H1Conn::connect(&addr).await.unwrap();
            let e = get_on(&mut c, false).await.unwrap_err();
            let got = match &e {
                H1Error::Malformed(_) => "malformed",
                H1Error::TooLarge(_) => "too_large",
                H1Error::Tls(..) => "tls",
                H1Error::Io {
                    nothing_received: false,
                    ..
                } => "closed",
                H1Error::Io { .. } => "nothing",
            };
            assert_eq!(got, want, "{e:?}");
        }
    }

    #[tokio::test]
    async fn http10_keeps_a_connection_only_when_asked_and_never_with_a_transfer_coding() {
        let mut c = scripted(
            vec![
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(),
            ],
            4096,
        )
        .await;
        let a = get_on(&mut c, false).await.unwrap();
        assert_eq!((&a.body[..], a.reusable), (&b"ok"[..], true));
        let a = get_on(&mut c, false).await.unwrap();
        assert_eq!((&a.body[..], a.reusable), (&b"ok"[..], false));
    }

    #[tokio::test]
    async fn a_length_on_an_answer_without_body_is_not_read() {
        let mut c = scripted(
            vec![
                b"HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n".to_vec(),
                b"HTTP/1.1 200 OK\r\nContent-Length: nonsense\r\n\r\n".to_vec(),
            ],
            4096,
        )
        .await;
        let a = get_on(&mut c, false).await.unwrap();
        assert_eq!((a.status, a.body.len(), a.reusable), (204, 0, true));
        let a = get_on(&mut c, true).await.unwrap();
        assert_eq!((a.status, a.body.len()), (200, 0));
    }

    /// A server for one connection: it reads the start of the request, then acts.
    async fn serve_once<F, Fut>(act: F) -> String
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 256];
            let _ = s.read(&mut b).await;
            act(s).await;
        });
        addr
    }

    /// Runs one exchange of `body` against a server that reads the head and then acts.
    async fn against<F, Fut>(body: usize, act: F) -> Result<Answer, H1Error>
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let addr = serve_once(act).await;
        let mut c = H1Conn::connect(&addr).await.unwrap();
        let head = format!("POST / HTTP/1.1\r\ncontent-length: {body}\r\n\r\n");
        let body = Bytes::from(vec![b'x'; body]);
        c.exchange(head.as_bytes(), &body, false, 1 << 20).await
    }

    fn reset(s: tokio::net::TcpStream) {
        let std = s.into_std().unwrap();
        let _ = socket2::SockRef::from(&std).set_linger(Some(std::time::Duration::ZERO));
    }

    #[tokio::test]
    async fn what_arrived_and_what_went_out_is_told_apart() {
        // Closed at once after a small request: it all went out, nothing came back.
        let e = against(10, |s| async move { drop(s) }).await.unwrap_err();
        assert!(
            matches!(
                e,
                H1Error::Io {
                    nothing_received: true,
                    unsent: false,
                    ..
                }
            ),
            "{e:?}"
        );
        // Reset in the middle of a large upload: not all of it went out.
        let e = against(32 << 20, |s| async move { reset(s) })
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                H1Error::Io {
                    nothing_received: true,
                    unsent: true,
                    ..
                }
            ),
            "{e:?}"
        );
        // Part of an answer, then a reset while the upload is still going: something came
        // back, so the request must not be sent again.
        let e = against(32 << 20, |mut s| async move {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npart")
                .await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            reset(s)
        })
        .await
        .unwrap_err();
        assert!(
            matches!(
                e,
                H1Error::Io {
                    nothing_received: false,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_large_answer_does_not_leave_a_large_buffer_on_the_idle_connection() {
        let mut big = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', 1 << 20));
        let mut c = scripted(vec![big], 1 << 16).await;
        let a = c
            .exchange(&get(), &Bytes::new(), false, 2 << 20)
            .await
            .unwrap();
        assert_eq!((a.body.len(), a.reusable), (1 << 20, true));
        assert!(c.rbuf.capacity() <= KEEP_BUFFER, "{}", c.rbuf.capacity());
    }

    #[tokio::test]
    async fn an_answer_before_the_upload_is_read_is_taken_and_the_connection_dropped() {
        let addr = serve_once(|mut s| async move {
            s.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            // Never reads the rest: the client's write can not finish.
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        })
        .await;
        let mut c = H1Conn::connect(&addr).await.unwrap();
        let body = Bytes::from(vec![b'x'; 32 << 20]);
        let head = b"POST / HTTP/1.1\r\ncontent-length: 33554432\r\n\r\n".to_vec();
        let a = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            c.exchange(&head, &body, false, 1024),
        )
        .await
        .expect("the early answer is read while the upload is stuck")
        .unwrap();
        assert_eq!(a.status, 413);
        assert!(!a.reusable);
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_stale_and_an_open_one_is_not() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let _ = close_rx.await;
            drop(s);
        });
        let mut c = H1Conn::connect(&addr).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!c.is_stale());
        close_tx.send(()).unwrap();
        let mut stale = false;
        for _ in 0..100 {
            // Readiness arrives through the runtime's poller.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            if c.is_stale() {
                stale = true;
                break;
            }
        }
        assert!(stale);
    }

    #[test]
    fn tokens_and_values_are_checked() {
        assert!(is_token("GET") && is_token("x-api-key") && !is_token("a b") && !is_token(""));
        assert!(is_field_value("a\tb ü") && !is_field_value("a\r\nb"));
    }
}
