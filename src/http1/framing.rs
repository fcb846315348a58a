//! Where an HTTP/1 message body ends (RFC 9112 section 6.3), decided from the head alone:
//! no body at all, a length, chunks, or the close of the connection.

/// How strictly framing lines are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As a proxy or client on a live connection must: every framing line ends in CRLF, a
    /// chunk size starts with a hex digit. Anything else is an error, because a peer that
    /// reads it otherwise finds another end of the message.
    Strict,
    /// As an importer of captures may: a bare LF ends a line, and spaces around a chunk
    /// size are allowed. Nothing is forwarded from such a reading, so no peer disagrees.
    Lenient,
}

impl Mode {
    /// How httparse reads heads in this mode: Lenient also takes runs of spaces in the
    /// start line, spaces after a field name and folded (obsolete multi-line) answer fields.
    pub fn head_parser(self) -> httparse::ParserConfig {
        let mut c = httparse::ParserConfig::default();
        if self == Mode::Lenient {
            c.allow_multiple_spaces_in_request_line_delimiters(true)
                .allow_multiple_spaces_in_response_status_delimiters(true)
                .allow_obsolete_multiline_headers_in_responses(true)
                .allow_spaces_after_header_name_in_responses(true);
        }
        c
    }
}

/// Where a body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// There is none (HEAD, 1xx, 204, 304, a 2xx to CONNECT; a request with no length).
    Empty,
    /// After this many bytes.
    Length(u64),
    /// At the last chunk and its trailers.
    Chunked,
    /// When the sender closes the connection (answers only).
    UntilClose,
}

/// Whether an answer with `status` has no body whatever its head says: answers to HEAD,
/// informational ones, 204, 304, and a 2xx to CONNECT (the tunnel starts instead).
pub fn answer_has_no_body(status: u16, head_request: bool, connect_request: bool) -> bool {
    head_request
        || status < 200
        || status == 204
        || status == 304
        || (connect_request && (200..300).contains(&status))
}

/// A decimal Content-Length value: digits only, no sign, no spaces inside.
pub fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// What a head's fields say about its body and its connection, gathered field by field.
#[derive(Debug)]
pub struct BodyFields {
    length: Result<Option<u64>, String>,
    chunked: bool,
    encoded: bool,
    close: bool,
    keep_alive: bool,
}

impl Default for BodyFields {
    fn default() -> Self {
        BodyFields {
            length: Ok(None),
            chunked: false,
            encoded: false,
            close: false,
            keep_alive: false,
        }
    }
}

impl BodyFields {
    /// Takes note of one header field.
    pub fn field(&mut self, name: &str, value: &[u8]) {
        if name.eq_ignore_ascii_case("content-length") {
            // A list of one value repeated is allowed (RFC 9110 section 8.6).
            for part in value.split(|&b| b == b',') {
                let Some(n) = parse_length(part) else {
                    self.length = Err(format!(
                        "Content-Length {:?} is not a decimal number",
                        String::from_utf8_lossy(value)
                    ));
                    break;
                };
                self.length = match std::mem::replace(&mut self.length, Ok(None)) {
                    Ok(Some(l)) if l != n => Err(format!(
                        "conflicting Content-Length values ({:?})",
                        String::from_utf8_lossy(value)
                    )),
                    Ok(_) => Ok(Some(n)),
                    e => e,
                };
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The codings of all fields form one list; chunked must be the last one, and
            // empty elements do not count (RFC 9110 section 5.6.1).
            if let Some(last) = super::headers::list_tokens(value).last() {
                self.encoded = true;
                self.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for t in super::headers::list_tokens(value) {
                self.close |= t.eq_ignore_ascii_case(b"close");
                self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }

    /// The framing of an answer with `status` to a request that was (or was not) HEAD or
    /// CONNECT, and whether the connection may carry another request. Transfer-Encoding
    /// wins over Content-Length, which is then dropped and the connection not trusted; a
    /// bad length is an error only where the length frames the body.
    pub fn answer(
        self,
        status: u16,
        head_request: bool,
        connect_request: bool,
        http11: bool,
    ) -> Result<(Framing, bool), String> {
        let mut reusable = if http11 {
            !self.close
        } else {
            self.keep_alive && !self.close
        };
        let framing = if answer_has_no_body(status, head_request, connect_request) {
            Framing::Empty
        } else if self.encoded {
            // Nor is an HTTP/1.0 answer with a transfer coding trusted (RFC 9112 section 6.1).
            if !matches!(self.length, Ok(None)) || !http11 {
                reusable = false;
            }
            if self.chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        } else {
            match self.length {
                Ok(Some(n)) => Framing::Length(n),
                Ok(None) => Framing::UntilClose,
                Err(message) => return Err(message),
            }
        };
        if status == 101 || framing == Framing::UntilClose {
            reusable = false;
        }
        Ok((framing, reusable))
    }

    /// The framing of a request body: a request has no body unless it says so, and one
    /// whose transfer codings do not end in chunked has no length anyone can know.
    pub fn request(self) -> Result<Framing, String> {
        if self.encoded {
            return if self.chunked {
                Ok(Framing::Chunked)
            } else {
                Err(
                    "request Transfer-Encoding does not end in chunked, so its length is unknown"
                        .into(),
                )
            };
        }
        match self.length? {
            Some(0) | None => Ok(Framing::Empty),
            Some(n) => Ok(Framing::Length(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        fields: &[(&str, &str)],
        status: u16,
        head: bool,
        http11: bool,
    ) -> Result<(Framing, bool), String> {
        let mut b = BodyFields::default();
        for (n, v) in fields {
            b.field(n, v.as_bytes());
        }
        b.answer(status, head, false, http11)
    }

    fn request(fields: &[(&str, &str)]) -> Result<Framing, String> {
        let mut b = BodyFields::default();
        for (n, v) in fields {
            b.field(n, v.as_bytes());
        }
        b.request()
    }

    #[test]
    fn transfer_encoding_wins_over_a_length_which_then_costs_the_connection() {
        let both = [("content-length", "3"), ("transfer-encoding", "chunked")];
        assert_eq!(
            answer(&both, 200, false, true),
            Ok((Framing::Chunked, false))
        );
        assert_eq!(request(&both), Ok(Framing::Chunked));
        // Even a length that is no number does not matter beside chunks.
        let bad = [
            ("Content-Length", "x"),
            ("Transfer-Encoding", "gzip, chunked"),
        ];
        assert_eq!(
            answer(&bad, 200, false, true),
            Ok((Framing::Chunked, false))
        );
        // Codings not ending in chunked: the close ends an answer; a request is refused.
        let gzip = [("transfer-encoding", "chunked, gzip")];
        assert_eq!(
            answer(&gzip, 200, false, true),
            Ok((Framing::UntilClose, false))
        );
        assert!(request(&gzip).is_err());
        // Empty list elements are not codings.
        let trailing = [("transfer-encoding", "gzip, chunked, ")];
        assert_eq!(request(&trailing), Ok(Framing::Chunked));
        let split = [
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
        ];
        assert_eq!(request(&split), Ok(Framing::Chunked));
    }

    #[test]
    fn lengths_must_be_decimal_and_agree() {
        assert_eq!(
            request(&[("content-length", "5, 5")]),
            Ok(Framing::Length(5))
        );
        assert_eq!(request(&[("content-length", "0")]), Ok(Framing::Empty));
        assert_eq!(request(&[]), Ok(Framing::Empty));
        for bad in ["x", "+1", "-1", "1 2", "", "99999999999999999999"] {
            assert!(request(&[("content-length", bad)]).is_err(), "{bad:?}");
        }
        let two = [("content-length", "1"), ("content-length", "2")];
        assert!(request(&two).unwrap_err().contains("conflicting"));
        assert!(answer(&two, 200, false, true).is_err());
    }

    #[test]
    fn answers_without_body_ignore_their_framing_fields() {
        for status in [100, 101, 103, 204, 304] {
            let (f, _) = answer(&[("content-length", "x")], status, false, true).unwrap();
            assert_eq!(f, Framing::Empty, "{status}");
        }
        assert_eq!(
            answer(&[("content-length", "12")], 200, true, true),
            Ok((Framing::Empty, true))
        );
        let mut b = BodyFields::default();
        b.field("content-length", b"5");
        assert_eq!(b.answer(200, false, true, true), Ok((Framing::Empty, true)));
        assert!(!answer_has_no_body(200, false, false));
        assert!(!answer_has_no_body(404, false, true));
    }

    #[test]
    fn the_connection_is_kept_as_the_version_and_the_fields_say() {
        assert_eq!(
            answer(&[], 200, false, true),
            Ok((Framing::UntilClose, false))
        );
        let cl = [("content-length", "1")];
        assert_eq!(
            answer(&cl, 200, false, true),
            Ok((Framing::Length(1), true))
        );
        assert_eq!(
            answer(&cl, 200, false, false),
            Ok((Framing::Length(1), false))
        );
        let ka = [("connection", "Keep-Alive"), ("content-length", "1")];
        assert_eq!(
            answer(&ka, 200, false, false),
            Ok((Framing::Length(1), true))
        );
        let close = [("connection", "x, close"), ("content-length", "1")];
        assert_eq!(
            answer(&close, 200, false, true),
            Ok((Framing::Length(1), false))
        );
        let chunked10 = [
            ("connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
        ];
        assert_eq!(
            answer(&chunked10, 200, false, false),
            Ok((Framing::Chunked, false))
        );
    }
}
