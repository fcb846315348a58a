//! The recorder's side of the tap's own HTTP/1.1 path: request and response heads kept as
//! the bytes that came over the wire ([`RawHeads`]), parsed into an exchange's strings on the
//! recorder thread, into strings of exchanges already written ([`SpareHeaders`]), so the
//! thread that serves traffic only copies bytes and the recorder seldom allocates.

use crate::exchange::{Exchange, Headers, Request as CapturedRequest};
use bytes::Bytes;

use super::h1_conn::MAX_HEADERS;

/// Request and response heads as they came over the wire, for the recorder thread to parse
/// into an exchange's strings; the thread that serves traffic only copies bytes.
#[derive(Debug)]
pub struct RawHeads {
    /// The client's request head.
    pub request: Option<Bytes>,
    /// Production's response head.
    pub response: Option<Bytes>,
}

impl RawHeads {
    /// Fills `ex`'s method, target, version and header lists from the heads, into strings
    /// taken from `spare` where it has them.
    pub fn fill(self, ex: &mut Exchange, spare: &mut SpareHeaders) {
        if let Some(head) = &self.request {
            fill_request(head, &mut ex.request, spare);
        }
        if let (Some(head), Some(resp)) = (&self.response, ex.response.as_mut()) {
            fill_response(head, &mut resp.headers, spare);
        }
    }
}

/// Strings of exchanges the recorder is done with, which the next heads are parsed into:
/// the recorder then does not allocate and free two strings for every field of every
/// exchange (a tenth of its time went to that; a value that is not UTF-8 still takes one).
/// Request and response lists are kept apart, so that each is reused for its own kind, and
/// so are the request line's words. A reused string keeps the largest capacity it ever had,
/// so a list grown past [`SpareHeaders::LIST_BYTES`] (a word past `WORD_BYTES`) is freed
/// rather than kept: what is held stays below [`SpareHeaders::MOST`], however large the
/// heads that pass.
#[derive(Debug, Default)]
pub struct SpareHeaders {
    requests: Vec<Headers>,
    responses: Vec<Headers>,
    /// Method, target and version strings.
    words: Vec<String>,
}

impl SpareHeaders {
    /// Lists kept of each kind.
    const KEEP: usize = 4;

    /// The most string capacity a kept list may hold: several times a typical head.
    pub const LIST_BYTES: usize = 8 << 10;

    /// Request-line words kept: those of two exchanges.
    const WORDS: usize = 6;

    /// The most capacity a kept word may hold.
    const WORD_BYTES: usize = 1 << 10;

    /// The most string capacity all kept strings hold together.
    pub const MOST: usize = 2 * Self::KEEP * Self::LIST_BYTES + Self::WORDS * Self::WORD_BYTES;

    /// Keeps `ex`'s header lists and request-line words for later heads, unless they are
    /// too large to keep; the rest of it is freed.
    pub fn give_back(&mut self, ex: Exchange) {
        let Exchange {
            request, response, ..
        } = ex;
        Self::keep(&mut self.requests, request.headers);
        if let Some(r) = response {
            Self::keep(&mut self.responses, r.headers);
        }
        for w in [request.method, request.uri, request.version] {
            if self.words.len() < Self::WORDS && (1..=Self::WORD_BYTES).contains(&w.capacity()) {
                self.words.push(w);
            }
        }
    }

    fn keep(pool: &mut Vec<Headers>, list: Headers) {
        if pool.len() >= Self::KEEP || list.capacity() == 0 || list.capacity() > MAX_HEADERS {
            return;
        }
        if Self::strings(&list) <= Self::LIST_BYTES {
            pool.push(list);
        }
    }

    /// The capacity `list`'s strings hold.
    fn strings(list: &Headers) -> usize {
        list.iter().map(|(n, v)| n.capacity() + v.capacity()).sum()
    }

    /// The string capacity the kept lists and words hold.
    #[cfg(test)]
    fn held(&self) -> usize {
        let lists = self.requests.iter().chain(&self.responses);
        lists.map(Self::strings).sum::<usize>()
            + self.words.iter().map(String::capacity).sum::<usize>()
    }

    /// `text` in a kept string, or a new one. Words go back in request-line order and are
    /// taken in reverse, so each tends to get the string that held the same word before.
    fn word(&mut self, text: &str) -> String {
        let mut w = self.words.pop().unwrap_or_default();
        w.clear();
        w.push_str(text);
        w
    }
}

/// Fields as the recording keeps them: lower-case names, in order, repeats kept, in the
/// strings of `list`.
fn field_list(fields: &[httparse::Header<'_>], mut list: Headers) -> Headers {
    list.resize_with(fields.len(), Default::default);
    for ((name, value), f) in list.iter_mut().zip(fields) {
        name.clear();
        name.push_str(f.name);
        name.make_ascii_lowercase();
        value.clear();
        match std::str::from_utf8(f.value) {
            Ok(v) => value.push_str(v),
            Err(_) => value.push_str(&String::from_utf8_lossy(f.value)),
        }
    }
    list
}

/// A request head this path took, as the recording keeps it (as [`super::hyper_path`]'s hyper
/// path does: the target in origin form, as the client sent it).
pub(super) fn fill_request(head: &[u8], r: &mut CapturedRequest, spare: &mut SpareHeaders) {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    // It parsed when it arrived; it parses the same way now.
    if req.parse(head).is_err() {
        return;
    }
    r.version = spare.word("HTTP/1.1");
    r.uri = spare.word(req.path.unwrap_or_default());
    r.method = spare.word(req.method.unwrap_or_default());
    r.headers = field_list(req.headers, spare.requests.pop().unwrap_or_default());
}

/// Production's response header fields.
pub(super) fn fill_response(head: &[u8], headers: &mut Headers, spare: &mut SpareHeaders) {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    if resp.parse(head).is_ok() {
        *headers = field_list(resp.headers, spare.responses.pop().unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parsed_into_spare_strings_hold_only_what_the_heads_say() {
        let fill = |req: &[u8], resp: &[u8], spare: &mut SpareHeaders| {
            let mut ex = Exchange {
                id: "x".into(),
                ts_us: 0,
                interface: None,
                tenant: None,
                request: CapturedRequest::default(),
                response: Some(crate::exchange::Response::default()),
                latency_us: None,
            };
            RawHeads {
                request: Some(Bytes::copy_from_slice(req)),
                response: Some(Bytes::copy_from_slice(resp)),
            }
            .fill(&mut ex, spare);
            ex
        };
        let long = (
            b"POST /long HTTP/1.1\r\nHost: shop\r\nX-A: a-long-value\r\nX-B: b\r\nX-C: c\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Only-Here: 1\r\n\r\n",
        );
        let short = (
            b"GET /s HTTP/1.1\r\nHOST: Other\r\nX-Bin: \xff\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\nServer: s\r\n\r\n",
        );
        let mut spare = SpareHeaders::default();
        let first = fill(long.0, long.1, &mut spare);
        spare.give_back(first.clone());
        // Shorter heads into longer spare strings, and the other way round.
        let reused = fill(short.0, short.1, &mut spare);
        let fresh = fill(short.0, short.1, &mut SpareHeaders::default());
        assert_eq!(reused, fresh);
        assert_eq!(
            fresh.request.headers,
            vec![
                ("host".to_string(), "Other".to_string()),
                ("x-bin".to_string(), "\u{fffd}".to_string())
            ]
        );
        spare.give_back(reused);
        assert_eq!(fill(long.0, long.1, &mut spare), first);

        // Large heads, one long field each at a different place, do not pile up in the
        // spare lists: each position of a reused list would keep its largest value.
        let mut spare = SpareHeaders::default();
        for k in 0..100 {
            // A long target too, every other time.
            let target = if k % 2 == 0 {
                "v".repeat(4 << 10)
            } else {
                "big".into()
            };
            let mut req = format!("GET /{target} HTTP/1.1\r\n").into_bytes();
            for i in 0..90 {
                let value = if i == k % 90 {
                    "v".repeat(8 << 10)
                } else {
                    "a".into()
                };
                req.extend_from_slice(format!("x-{i}: {value}\r\n").as_bytes());
            }
            req.extend_from_slice(b"\r\n");
            // As many fields in the answer, so no list is cut short on its way round.
            let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..90 {
                resp.extend_from_slice(format!("x-{i}: a\r\n").as_bytes());
            }
            resp.extend_from_slice(b"\r\n");
            let ex = fill(&req, &resp, &mut spare);
            spare.give_back(ex);
            // Eight lists of at most 8 KiB of strings each, and six short words.
            assert!(
                spare.held() <= SpareHeaders::MOST,
                "{} bytes kept",
                spare.held()
            );
        }
    }
}
