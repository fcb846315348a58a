//! Which header fields describe one connection rather than the message (RFC 9110 section
//! 7.6.1), and so are never passed on from one connection to another: one list, the names
//! a `Connection` field adds to it, and one rule for `te`. The tap's two paths, replay and
//! `--set-header` all ask here.

/// Fields that belong to one connection, lower case. `http2-settings` belongs to the
/// HTTP/1.1 upgrade to h2c (RFC 9113 section 3.2.1), which the tap never forwards.
pub const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "http2-settings",
];

/// The one `te` value passed on: `trailers` is what gRPC needs end to end; any transfer
/// coding `te` offers is for the connection it came on.
pub const TE_FORWARDED: &str = "trailers";

/// Whether `name` is one of [`HOP_BY_HOP`], in any letter case.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// The elements of a comma-separated field value, trimmed, empty ones left out.
pub fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether a `Connection` option naming `token` removes the field of that name. `close`
/// and `keep-alive` are options, not fields; `te` keeps its own rule (a client listing it,
/// as RFC 9110 section 10.1.4 asks, still wants trailers); and the fields that frame the
/// body stay, since the next hop needs them to find its end.
pub fn connection_option_removes(token: &[u8]) -> bool {
    ![
        &b"close"[..],
        b"keep-alive",
        b"te",
        b"content-length",
        b"transfer-encoding",
        b"host",
    ]
    .iter()
    .any(|k| token.eq_ignore_ascii_case(k))
}

/// Whether a request's `te` values ask for trailers, the one thing `te` says end to end.
pub fn te_asks_for_trailers<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    values
        .into_iter()
        .flat_map(list_tokens)
        .any(|t| t.eq_ignore_ascii_case(TE_FORWARDED.as_bytes()))
}

/// Which way a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A request, to the server.
    Request,
    /// An answer, to the client.
    Response,
}

/// What becomes of one header field when a message is passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Passed on as it is.
    Keep,
    /// Left out.
    Drop,
    /// A request's `te` that asks for trailers: `te: trailers` goes in its place, once for
    /// all `te` fields.
    Trailers,
}

/// The policy for the fields of one message: [`HOP_BY_HOP`], the names its `Connection`
/// fields list, and the `te` rule. It reads the message's fields (name, value) through a
/// function that lists them afresh, so it borrows them and allocates nothing.
#[derive(Clone, Debug)]
pub struct FieldPolicy<F> {
    direction: Direction,
    fields: F,
    /// Some `Connection` option names a field to remove.
    removes: bool,
    /// A `te` field asks for trailers.
    trailers: bool,
}

impl<'a, F, I> FieldPolicy<F>
where
    F: Fn() -> I,
    I: Iterator<Item = (&'a [u8], &'a [u8])>,
{
    /// The policy for a message whose fields `fields` lists.
    pub fn new(direction: Direction, fields: F) -> Self {
        let (mut removes, mut trailers) = (false, false);
        for (name, value) in fields() {
            if name.eq_ignore_ascii_case(b"connection") {
                removes |= list_tokens(value).any(connection_option_removes);
            } else if name.eq_ignore_ascii_case(b"te") {
                trailers |= te_asks_for_trailers([value]);
            }
        }
        FieldPolicy {
            direction,
            fields,
            removes,
            trailers,
        }
    }

    /// What becomes of the field called `name`.
    pub fn field(&self, name: &[u8]) -> Forward {
        if name.eq_ignore_ascii_case(b"te") {
            return if self.direction == Direction::Request && self.trailers {
                Forward::Trailers
            } else {
                Forward::Drop
            };
        }
        if is_hop_by_hop(name) || (self.removes && self.connection_names(name)) {
            Forward::Drop
        } else {
            Forward::Keep
        }
    }

    /// Whether a `Connection` field lists `name` as one to remove.
    pub fn connection_names(&self, name: &[u8]) -> bool {
        (self.fields)()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
            .flat_map(|(_, v)| list_tokens(v))
            .any(|t| connection_option_removes(t) && t.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(direction: Direction, head: &[(&str, &str)]) -> Vec<(String, Forward)> {
        let fields = || head.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        let policy = FieldPolicy::new(direction, fields);
        head.iter()
            .map(|(n, _)| (n.to_string(), policy.field(n.as_bytes())))
            .collect()
    }

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_go() {
        let head = [
            ("Connection", "close, X-Secret-Hop, te, content-length"),
            ("x-secret-hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAA"),
            ("content-length", "2"),
            ("TE", "gzip"),
            ("te", "trailers"),
            ("x-kept", "1"),
        ];
        let got = decide(Direction::Request, &head);
        let kept: Vec<(&str, Forward)> = got
            .iter()
            .filter(|(_, f)| *f != Forward::Drop)
            .map(|(n, f)| (n.as_str(), *f))
            .collect();
        assert_eq!(
            kept,
            [
                ("content-length", Forward::Keep),
                ("TE", Forward::Trailers),
                ("te", Forward::Trailers),
                ("x-kept", Forward::Keep)
            ]
        );
        // In an answer `te` means nothing at all.
        let got = decide(Direction::Response, &head);
        assert!(got
            .iter()
            .all(|(n, f)| (*f == Forward::Drop) != (n == "content-length" || n == "x-kept")));
    }

    #[test]
    fn only_trailers_survive_of_te() {
        for (values, want) in [
            (&["trailers"][..], true),
            (&["gzip, trailers"], true),
            (&["Trailers ,"], true),
            (&["gzip", "trailers"], true),
            (&["gzip"], false),
            (&["trailers;q=0.5"], false),
            (&[""], false),
        ] {
            assert_eq!(
                te_asks_for_trailers(values.iter().map(|v| v.as_bytes())),
                want,
                "{values:?}"
            );
            let head: Vec<(&str, &str)> = values.iter().map(|v| ("te", *v)).collect();
            let fate = if want {
                Forward::Trailers
            } else {
                Forward::Drop
            };
            assert!(decide(Direction::Request, &head)
                .iter()
                .all(|(_, f)| *f == fate));
        }
    }

    #[test]
    fn the_list_is_lower_case_and_known_by_any_case() {
        for h in HOP_BY_HOP {
            assert_eq!(h, h.to_ascii_lowercase());
            assert!(is_hop_by_hop(h.to_ascii_uppercase().as_bytes()));
        }
        assert!(!is_hop_by_hop(b"content-length") && !is_hop_by_hop(b"trailer"));
    }
}
