//! From packets to HTTP exchanges, one pipeline for every packet source: `import --from
//! pcap` hands it the frames of capture files, `capture` the frames of a live ring. A
//! [`Pipeline`] peels the link and IP layers (etherparse; Ethernet, Linux cooked v1/v2, raw
//! IP, BSD loopback; IPv4 and IPv6) and hands TCP segments to [`tcp`], which reassembles
//! each connection and passes its two byte streams to [`http`] for HTTP/1.x pairing; the
//! exchanges leave through [`order`], in order of their request's capture time.
//! Whatever cannot become an exchange is counted by reason in the [`ImportReport`];
//! checksums are not verified: frames taken on the sending host carry the unfinished
//! checksums of checksum offload.

pub(crate) mod h2;
pub(crate) mod http;
pub(crate) mod marks;
pub(crate) mod order;
pub(crate) mod tcp;

use crate::error::Result;
use crate::recording::import::{ImportReport, Sink};
use etherparse::{EtherType, IpNumber, NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
pub use tcp::{Limits, LIVE_IDLE_US, MAX_HELD};

const IGN_NOT_IP: &str = "frames that are not IP (ARP, LLDP, ...)";
const IGN_NOT_TCP: &str = "IP packets that are not TCP (UDP, ICMP, ...)";
const SKIP_LINK: &str = "packets of a link type this importer does not read";
const SKIP_BAD: &str = "packets whose headers are malformed or cut short";
const SKIP_SNAPLEN: &str = "packets cut short by the capture's snap length";
const SKIP_FRAGMENT: &str = "IP fragments (not reassembled)";

/// The skip reasons that count packets, not streams or messages: what such a packet
/// carried is lost too, and counted again by the stream it belonged to (as a gap).
pub const PACKET_REASONS: [&str; 4] = [SKIP_LINK, SKIP_BAD, SKIP_SNAPLEN, SKIP_FRAGMENT];

/// One TCP segment as the reassembler needs it.
#[derive(Clone, Debug)]
pub struct Segment<'a> {
    /// Sender address and port.
    pub src: SocketAddr,
    /// Receiver address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when `has_ack`).
    pub ack: u32,
    /// SYN flag.
    pub syn: bool,
    /// ACK flag.
    pub has_ack: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// TCP payload.
    pub payload: &'a [u8],
    /// Capture time, microseconds since the epoch.
    pub ts_us: i64,
}

/// Where the current packet is, for skip examples and errors.
pub struct Ctx<'a> {
    /// Where exchanges go.
    pub sink: &'a mut dyn Sink,
    /// What is counted.
    pub report: &'a mut ImportReport,
    /// The file being read, or the device captured from.
    pub file: &'a Path,
    /// 1-based packet number in `file`; 0 once the capture is over.
    pub packet: u64,
}

impl Ctx<'_> {
    /// `file: packet N` (or `file: end of capture` once the packets are read).
    pub fn at(&self) -> String {
        if self.packet == 0 {
            format!("{}: end of capture", self.file.display())
        } else {
            format!("{}: packet {}", self.file.display(), self.packet)
        }
    }
}

/// Frames in, exchanges and counts out: the one way packets become exchanges.
#[derive(Default)]
pub struct Pipeline {
    tracker: tcp::Tracker,
}

impl Pipeline {
    /// A pipeline that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pipeline whose reassembler holds no more than `limits` allow.
    pub fn with_limits(limits: Limits) -> Self {
        Pipeline {
            tracker: tcp::Tracker::new(limits),
        }
    }

    /// Capture time has reached `now_us` without a frame: connections idle past the limit
    /// are given up now rather than at the next frame, and exchanges held behind a request
    /// open past the order's bound are written. `now_us` must be no later than any frame
    /// still to come.
    pub fn tick(&mut self, now_us: i64, ctx: &mut Ctx<'_>) -> Result<()> {
        self.tracker.tick(now_us, ctx)
    }

    /// Bytes the live connections hold now (bounded by [`Limits::max_held`]).
    pub fn held_bytes(&self) -> usize {
        self.tracker.held()
    }

    /// The most bytes the live connections held at once so far.
    pub fn peak_held_bytes(&self) -> usize {
        self.tracker.peak_held()
    }

    /// Takes one frame: a TCP segment goes to its connection; anything else is counted as
    /// ignored (not TCP by nature) or skipped (unreadable), by reason.
    pub fn frame(&mut self, frame: &Frame<'_>, ctx: &mut Ctx<'_>) -> Result<()> {
        match decode(frame) {
            Decoded::Tcp(seg) => self.tracker.segment(&seg, ctx),
            Decoded::Ignore(reason) => {
                ctx.report.ignore(reason);
                Ok(())
            }
            Decoded::Skip(reason) => {
                let at = ctx.at();
                ctx.report.skip(reason, || at);
                Ok(())
            }
        }
    }

    /// Connections being followed now (bounded by the reassembler's limits).
    pub fn live_connections(&self) -> usize {
        self.tracker.live()
    }

    /// Exchanges completed and held until the requests that began before them are done.
    pub fn held(&self) -> usize {
        self.tracker.held_exchanges()
    }

    /// Ends the capture: connections still open give up what they completed.
    pub fn finish(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        self.tracker.finish(ctx)
    }
}

/// One captured frame.
pub struct Frame<'a> {
    /// 1-based packet number within its file (or since a live capture began).
    pub n: u64,
    /// Capture time, microseconds since the epoch.
    pub ts_us: i64,
    /// The link layer the frame starts with.
    pub link: DataLink,
    /// The frame's bytes as captured.
    pub data: &'a [u8],
    /// The capture kept fewer bytes than were on the wire.
    pub cut: bool,
}

/// What a frame turned out to be.
enum Decoded<'a> {
    Tcp(Segment<'a>),
    Ignore(&'static str),
    Skip(&'static str),
}

/// Slices what follows a Linux cooked header of `len` bytes whose protocol (an EtherType)
/// is at `proto_at`; `None` when the frame is shorter than the header.
fn cooked(
    d: &[u8],
    proto_at: usize,
    len: usize,
) -> Option<Result<SlicedPacket<'_>, etherparse::err::packet::SliceError>> {
    let proto = d.get(proto_at..proto_at + 2)?;
    let rest = d.get(len..)?;
    Some(SlicedPacket::from_ether_type(
        EtherType(u16::from_be_bytes([proto[0], proto[1]])),
        rest,
    ))
}

/// Peels link, IP and TCP headers.
fn decode<'a>(f: &Frame<'a>) -> Decoded<'a> {
    let d = f.data;
    let sliced = match f.link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(d),
        // Linux cooked v1: packet type (2), ARPHRD (2), address length (2), address (8),
        // protocol (2). Read here rather than by etherparse, which refuses ARPHRD types
        // such as loopback (772) that `tcpdump -i any` records for `lo`.
        DataLink::LINUX_SLL => match cooked(d, 14, 16) {
            Some(r) => r,
            None => return Decoded::Skip(if f.cut { SKIP_SNAPLEN } else { SKIP_BAD }),
        },
        // Linux cooked v2: protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type
        // (1), address length (1), address (8), then the network layer.
        DataLink::LINUX_SLL2 => match cooked(d, 0, 20) {
            Some(r) => r,
            None => return Decoded::Skip(if f.cut { SKIP_SNAPLEN } else { SKIP_BAD }),
        },
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(d),
        // BSD loopback: a 4-byte address family, then IP.
        DataLink::NULL | DataLink::LOOP => match d.get(4..) {
            Some(rest) => SlicedPacket::from_ip(rest),
            None => return Decoded::Skip(if f.cut { SKIP_SNAPLEN } else { SKIP_BAD }),
        },
        _ => return Decoded::Skip(SKIP_LINK),
    };
    let p = match sliced {
        Ok(p) => p,
        Err(_) => return Decoded::Skip(if f.cut { SKIP_SNAPLEN } else { SKIP_BAD }),
    };
    let (src_ip, dst_ip, payload) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
            ip.payload(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
            ip.payload(),
        ),
        _ => return Decoded::Ignore(IGN_NOT_IP),
    };
    if payload.fragmented {
        return Decoded::Skip(SKIP_FRAGMENT);
    }
    match &p.transport {
        // Strict slicing checked the IP length against the captured bytes, so even in a
        // frame cut by the snap length (`f.cut`) the TCP payload here is whole: what was
        // cut is link padding or a trailer. A payload really cut fails slicing above.
        Some(TransportSlice::Tcp(t)) => Decoded::Tcp(Segment {
            src: SocketAddr::new(src_ip, t.source_port()),
            dst: SocketAddr::new(dst_ip, t.destination_port()),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            syn: t.syn(),
            has_ack: t.ack(),
            fin: t.fin(),
            rst: t.rst(),
            payload: t.payload(),
            ts_us: f.ts_us,
        }),
        None if payload.ip_number == IpNumber::TCP => {
            Decoded::Skip(if f.cut { SKIP_SNAPLEN } else { SKIP_BAD })
        }
        _ => Decoded::Ignore(IGN_NOT_TCP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Exchange;

    /// A scripted TCP conversation, built segment by segment after a full handshake.
    pub(super) struct Talk {
        segs: Vec<(bool, u32, Vec<u8>, bool, bool)>,
        c: u32,
        s: u32,
    }

    const C_ISN: u32 = u32::MAX - 10; // so client sequence numbers wrap
    const S_ISN: u32 = 5000;

    impl Talk {
        pub(super) fn new() -> Self {
            Talk {
                segs: vec![
                    (true, C_ISN, vec![], true, false),
                    (false, S_ISN, vec![], true, false),
                ],
                c: C_ISN.wrapping_add(1),
                s: S_ISN + 1,
            }
        }
        pub(super) fn client(mut self, data: &[u8]) -> Self {
            self.segs.push((true, self.c, data.to_vec(), false, false));
            self.c = self.c.wrapping_add(data.len() as u32);
            self
        }
        pub(super) fn server(mut self, data: &[u8]) -> Self {
            self.segs.push((false, self.s, data.to_vec(), false, false));
            self.s = self.s.wrapping_add(data.len() as u32);
            self
        }
        /// The next `n` client bytes are never captured.
        pub(super) fn lose_client(mut self, n: u32) -> Self {
            self.c = self.c.wrapping_add(n);
            self
        }
        pub(super) fn fin(mut self, client: bool) -> Self {
            let seq = if client { self.c } else { self.s };
            self.segs.push((client, seq, vec![], false, true));
            self
        }
        /// Runs the conversation as connection 0 of a [`Net`], a segment each 1 ms.
        pub(super) fn run(self) -> (Vec<Exchange>, ImportReport) {
            let segs = self.segs.into_iter().enumerate();
            Net {
                segs: segs
                    .map(|(i, (client, seq, data, syn, fin))| {
                        (0, client, seq, data, syn, fin, 1_000 * i as i64)
                    })
                    .collect(),
                seqs: Vec::new(),
                clock: 0,
            }
            .run()
        }
    }

    #[test]
    fn an_upgrade_pairs_the_101_and_counts_what_follows() {
        let (out, r) = Talk::new()
            .client(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .client(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
            .server(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
            .fin(true)
            .fin(false)
            .run();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].response.as_ref().unwrap().status, 101);
        assert_eq!(r.skipped.len(), 1, "{r:?}");
        assert!(r
            .skipped
            .keys()
            .next()
            .unwrap()
            .contains("switched protocols"));
    }

    #[test]
    fn interim_answers_and_read_until_close_bodies() {
        let (out, r) = Talk::new()
            .client(b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
            .server(b"HTTP/1.1 100 Continue\r\n\r\n")
            .client(b"ok")
            .server(b"HTTP/1.0 200 OK\r\n\r\nuntil the ")
            .server(b"end")
            .fin(false)
            .fin(true)
            .run();
        assert!(r.skipped.is_empty(), "{r:?}");
        assert_eq!(out.len(), 1);
        let resp = out[0].response.as_ref().unwrap();
        assert_eq!((resp.status, &resp.body[..]), (200, &b"until the end"[..]));
        assert_eq!(&out[0].request.body[..], b"ok");
        // Last request packet is #5 (4 ms), first final-answer packet #6 (5 ms).
        assert_eq!(out[0].latency_us, Some(1_000));
    }

    #[test]
    fn what_cannot_be_used_is_counted_never_guessed() {
        // Not HTTP at all (a TLS ClientHello).
        let (out, r) = Talk::new()
            .client(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
            .fin(true)
            .fin(false)
            .run();
        assert!(out.is_empty());
        assert!(
            r.skipped
                .keys()
                .any(|k| k.contains("TCP streams that are TLS")),
            "{r:?}"
        );

        // A lost client segment: the first request is whole, the second cannot be read.
        let (out, r) = Talk::new()
            .client(b"GET /a HTTP/1.1\r\n\r\n")
            .server(b"HTTP/1.1 204 No Content\r\n\r\n")
            .client(b"GET /b HTT")
            .lose_client(8)
            .client(b"\r\n\r\n")
            .fin(true)
            .fin(false)
            .run();
        assert_eq!(out.len(), 1);
        assert!(
            r.skipped.keys().any(|k| k.contains("lost segment")),
            "{r:?}"
        );
        assert!(
            r.skipped
                .keys()
                .any(|k| k.starts_with("requests cut short")),
            "{r:?}"
        );

        // The capture ends inside a response: the request is kept, without it.
        let (out, r) = Talk::new()
            .client(b"GET /c HTTP/1.1\r\n\r\n")
            .server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .run();
        assert_eq!(out.len(), 1);
        assert!(out[0].response.is_none());
        assert!(
            r.skipped
                .keys()
                .any(|k| k.starts_with("responses cut short")),
            "{r:?}"
        );
        assert!(
            r.examples
                .values()
                .flatten()
                .any(|e| e.contains("capture ended")),
            "{r:?}"
        );
        assert_eq!(
            r.notes.get("TCP streams still open when the capture ended"),
            Some(&1)
        );
    }

    #[test]
    fn tls_is_counted_whole_and_http2_prior_knowledge_goes_to_its_decoder() {
        let (out, r) = Talk::new()
            .client(b"\x16\x03")
            .client(b"\x01\x00\xa5\x01")
            .server(b"\x16\x03\x03\x00\x7a\x02")
            .fin(true)
            .fin(false)
            .run();
        assert!(out.is_empty());
        assert_eq!(r.skipped_total(), 1, "{r:?}");
        assert!(r.skipped.keys().next().unwrap().contains("TLS"), "{r:?}");

        // The preface arrives in two pieces; the first alone could start a request line.
        // The stream goes to the HTTP/2 decoder: a GET (HPACK static entries for GET, /,
        // http) answered 200.
        let (out, r) = Talk::new()
            .client(b"PRI * HT")
            .client(b"TP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .server(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .client(b"\x00\x00\x03\x01\x05\x00\x00\x00\x01\x82\x84\x86")
            .server(b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x88")
            .fin(true)
            .fin(false)
            .run();
        assert_eq!(r.skipped_total(), 0, "{r:?}");
        assert_eq!(out.len(), 1, "{r:?}");
        assert_eq!(
            (
                out[0].request.version.as_str(),
                out[0].response.as_ref().unwrap().status
            ),
            ("HTTP/2", 200)
        );

        // A request whose method starts like the preface is still HTTP/1.
        let (out, r) = Talk::new()
            .client(b"PR")
            .client(b"OPFIND / HTTP/1.1\r\n\r\n")
            .server(b"HTTP/1.1 204 No Content\r\n\r\n")
            .fin(true)
            .fin(false)
            .run();
        assert_eq!(out.len(), 1, "{r:?}");
        assert_eq!(r.skipped_total(), 0, "{r:?}");
    }

    /// (connection, from the client, sequence number, payload, SYN, FIN, capture time)
    type NetSeg = (usize, bool, u32, Vec<u8>, bool, bool, i64);

    /// Several scripted connections to one server, their segments interleaved as given;
    /// each segment's capture time is 1 ms after the one before unless set.
    pub(super) struct Net {
        segs: Vec<NetSeg>,
        /// Next client and server sequence numbers per connection.
        seqs: Vec<(u32, u32)>,
        clock: i64,
    }

    impl Net {
        pub(super) fn new(conns: usize) -> Self {
            Net {
                segs: Vec::new(),
                seqs: vec![(C_ISN, S_ISN); conns],
                clock: 0,
            }
        }
        /// Moves the clock to `ts_us` for the next segment.
        pub(super) fn at(&mut self, ts_us: i64) -> &mut Self {
            self.clock = ts_us - 1_000;
            self
        }
        fn push(&mut self, c: usize, client: bool, data: &[u8], syn: bool, fin: bool) -> &mut Self {
            self.clock += 1_000;
            let (cs, ss) = &mut self.seqs[c];
            let seq = if client { cs } else { ss };
            self.segs
                .push((c, client, *seq, data.to_vec(), syn, fin, self.clock));
            *seq = seq.wrapping_add(data.len() as u32 + u32::from(syn || fin));
            self
        }
        pub(super) fn open(&mut self, c: usize) -> &mut Self {
            self.push(c, true, b"", true, false)
                .push(c, false, b"", true, false)
        }
        pub(super) fn client(&mut self, c: usize, data: &[u8]) -> &mut Self {
            self.push(c, true, data, false, false)
        }
        pub(super) fn server(&mut self, c: usize, data: &[u8]) -> &mut Self {
            self.push(c, false, data, false, false)
        }
        pub(super) fn close(&mut self, c: usize) -> &mut Self {
            self.push(c, true, b"", false, true)
                .push(c, false, b"", false, true)
        }
        fn addrs(c: usize) -> (SocketAddr, SocketAddr) {
            (
                SocketAddr::from(([10, 0, 0, 1], 40_000 + c as u16)),
                "10.0.0.2:80".parse().unwrap(),
            )
        }
        /// Feeds every segment to `tracker`, the input not yet over.
        fn feed(
            &self,
            tracker: &mut tcp::Tracker,
            out: &mut Vec<Exchange>,
            report: &mut ImportReport,
        ) {
            let file = std::path::PathBuf::from("t.pcap");
            for (i, (c, from_client, seq, data, syn, fin, ts)) in self.segs.iter().enumerate() {
                let (client, server) = Self::addrs(*c);
                let (src, dst) = if *from_client {
                    (client, server)
                } else {
                    (server, client)
                };
                let seg = Segment {
                    src,
                    dst,
                    seq: *seq,
                    ack: if *syn && !from_client {
                        C_ISN.wrapping_add(1)
                    } else {
                        0
                    },
                    syn: *syn,
                    has_ack: !(*syn && *from_client),
                    fin: *fin,
                    rst: false,
                    payload: data,
                    ts_us: *ts,
                };
                let mut ctx = Ctx {
                    sink: out,
                    report,
                    file: &file,
                    packet: i as u64 + 1,
                };
                tracker.segment(&seg, &mut ctx).unwrap();
            }
        }
        /// Runs every segment through a tracker, then ends the input; `before_end` sees
        /// what was written before the end.
        fn run_with(
            &self,
            tracker: &mut tcp::Tracker,
            before_end: impl FnOnce(&[Exchange]),
        ) -> (Vec<Exchange>, ImportReport) {
            let mut out = Vec::new();
            let mut report = ImportReport::new("packets");
            self.feed(tracker, &mut out, &mut report);
            before_end(&out);
            let mut ctx = Ctx {
                sink: &mut out,
                report: &mut report,
                file: Path::new("t.pcap"),
                packet: 0,
            };
            tracker.finish(&mut ctx).unwrap();
            (out, report)
        }
        pub(super) fn run(&self) -> (Vec<Exchange>, ImportReport) {
            self.run_with(&mut tcp::Tracker::default(), |_| {})
        }
    }

    pub(super) fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nhost: h\r\n\r\n").into_bytes()
    }
    pub(super) const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    fn paths(out: &[Exchange]) -> Vec<&str> {
        out.iter().map(|e| e.request.uri.as_str()).collect()
    }

    fn sorted_by_time(out: &[Exchange]) -> bool {
        out.windows(2).all(|w| w[0].ts_us <= w[1].ts_us)
    }

    #[test]
    fn a_request_that_began_first_and_completed_last_is_written_first() {
        let mut n = Net::new(3);
        n.open(0).open(1).open(2);
        // The slow request's head arrives in two pieces, the first before the others.
        n.client(0, b"GET /slow HTTP/1.1\r\n");
        n.client(1, &get("/fast1")).server(1, OK);
        n.client(0, b"host: h\r\n\r\n");
        n.client(2, &get("/fast2")).server(2, OK);
        n.client(1, &get("/fast3")).server(1, OK);
        n.server(0, OK);
        n.close(1).close(2).close(0);
        let mut seen_before_end = 0;
        let (out, r) = n.run_with(&mut tcp::Tracker::default(), |o| {
            seen_before_end = o.len();
        });
        assert_eq!(paths(&out), ["/slow", "/fast1", "/fast2", "/fast3"]);
        assert!(sorted_by_time(&out));
        // Written as soon as the slow one completed, not at the end.
        assert_eq!(seen_before_end, 4);
        assert!(!r.notes.contains_key(order::NOTE_OUT_OF_ORDER), "{r:?}");
        assert_eq!(r.written, 4);
    }

    #[test]
    fn a_request_open_past_the_bound_stops_holding_and_what_follows_is_counted() {
        let mut n = Net::new(2);
        n.open(0).open(1);
        n.client(0, &get("/long-poll"));
        n.client(1, &get("/a")).server(1, OK);
        n.at(order::MAX_HOLD_US + 10_000);
        n.client(1, &get("/b")).server(1, OK);
        n.server(0, OK);
        n.close(0).close(1);
        let mut before = Vec::new();
        let (out, r) = n.run_with(&mut tcp::Tracker::default(), |o| {
            before = paths(o).iter().map(|s| s.to_string()).collect();
        });
        // /a waited for the long poll until it had been open for the bound, then went.
        assert_eq!(before, ["/a", "/b", "/long-poll"]);
        assert_eq!(paths(&out), ["/a", "/b", "/long-poll"]);
        assert_eq!(r.notes[order::NOTE_OUT_OF_ORDER], 1, "{r:?}");
    }

    #[test]
    fn requests_the_server_can_no_longer_answer_are_written_at_once() {
        let mut n = Net::new(2);
        n.open(0).open(1);
        // The server's answer is malformed: its direction is no longer read.
        n.client(0, &get("/a"))
            .server(0, b"HTTP/1.1 200 OK\r\ncontent-length: zz\r\n\r\n");
        n.client(1, &get("/b")).server(1, OK);
        n.at(30_000_000);
        n.client(0, &get("/c"));
        // And a server that closed its side: the request after it is not answered either.
        n.client(1, &get("/d"));
        n.push(1, false, b"", false, true);
        n.client(1, &get("/e"));
        let mut before = Vec::new();
        let (out, r) = n.run_with(&mut tcp::Tracker::default(), |o| {
            before = paths(o).iter().map(|s| s.to_string()).collect();
        });
        // Nothing waited for the end of the input, and all is in capture order.
        assert_eq!(before, ["/a", "/b", "/c", "/d", "/e"], "{r:?}");
        assert_eq!(paths(&out), ["/a", "/b", "/c", "/d", "/e"]);
        assert!(!r.notes.contains_key(order::NOTE_OUT_OF_ORDER), "{r:?}");
        assert_eq!(r.notes.get(http::NOTE_NO_RESPONSE), Some(&4), "{r:?}");
    }

    #[test]
    fn a_given_up_connection_no_longer_holds_anything_back() {
        let mut n = Net::new(2);
        n.open(0).open(1);
        // A slowloris: a request head that never ends.
        n.client(0, b"GET /never HTTP/1.1\r\nx-a: 1\r\n");
        n.client(1, &get("/a")).server(1, OK);
        let mut t = tcp::Tracker::default();
        let (out, r) = n.run_with(&mut t, |o| assert!(o.is_empty()));
        assert_eq!(paths(&out), ["/a"]);
        assert!(r
            .skipped
            .keys()
            .any(|k| k.starts_with("requests cut short")));

        // Given up because too many were open: the rest is written at once.
        let mut n = Net::new(2);
        n.open(0).open(1);
        n.client(0, b"GET /never HTTP/1.1\r\nx-a: 1\r\n");
        n.client(1, &get("/a")).server(1, OK);
        let mut t = tcp::Tracker::default();
        let mut report = ImportReport::new("packets");
        let mut out = Vec::new();
        n.feed(&mut t, &mut out, &mut report);
        let file = std::path::PathBuf::from("t.pcap");
        assert!(out.is_empty());
        assert_eq!(t.held_exchanges(), 1);
        for i in 0..tcp::MAX_LIVE {
            let seg = Segment {
                src: SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 1024)),
                dst: "10.0.0.2:80".parse().unwrap(),
                seq: 7,
                ack: 0,
                syn: true,
                has_ack: false,
                fin: false,
                rst: false,
                payload: b"",
                ts_us: 100_000 + i as i64,
            };
            let mut ctx = Ctx {
                sink: &mut out,
                report: &mut report,
                file: &file,
                packet: 2,
            };
            t.segment(&seg, &mut ctx).unwrap();
        }
        assert_eq!(paths(&out), ["/a"]);
        assert_eq!(t.held_exchanges(), 0);
        assert!(report
            .skipped
            .keys()
            .any(|k| k.starts_with("requests cut short")));
    }

    #[test]
    fn the_end_of_the_input_writes_what_is_held_in_order() {
        let mut n = Net::new(3);
        n.open(0).open(1).open(2);
        n.client(0, &get("/unanswered"));
        n.client(2, &get("/c")).server(2, OK);
        n.client(1, &get("/b")).server(1, OK);
        let (out, r) = n.run_with(&mut tcp::Tracker::default(), |o| assert!(o.is_empty()));
        assert_eq!(paths(&out), ["/unanswered", "/c", "/b"]);
        assert!(out[0].response.is_none());
        assert!(sorted_by_time(&out));
        assert!(!r.notes.contains_key(order::NOTE_OUT_OF_ORDER), "{r:?}");
    }

    /// One connection's part of a random interleaving: requests, each answered, each
    /// message possibly split in two segments; closed or left open at the end.
    #[derive(Clone, Debug)]
    struct Plan {
        requests: Vec<(usize, usize)>,
        close: bool,
    }

    fn plan() -> impl proptest::strategy::Strategy<Value = Plan> {
        use proptest::prelude::*;
        (
            proptest::collection::vec((0usize..40, 0usize..40), 0..5),
            any::<bool>(),
        )
            .prop_map(|(requests, close)| Plan { requests, close })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::fuzz_cases(256)))]
        #[test]
        fn any_interleaving_comes_out_in_capture_order_whole(
            plans in proptest::collection::vec(plan(), 1..7),
            picks in proptest::collection::vec(0usize..1000, 0..400),
        ) {
            // Each connection's segments in its own order; the connections interleaved by
            // `picks`, then whatever is left in turn.
            let mut ops: Vec<Vec<(bool, Vec<u8>)>> = Vec::new();
            let mut expected = Vec::new();
            for (c, p) in plans.iter().enumerate() {
                let mut v = Vec::new();
                for (i, (rs, ss)) in p.requests.iter().enumerate() {
                    let path = format!("/c{c}/r{i}");
                    expected.push(path.clone());
                    let req = get(&path);
                    let at = rs % req.len();
                    if at > 0 {
                        v.push((true, req[..at].to_vec()));
                    }
                    v.push((true, req[at..].to_vec()));
                    let at = ss % OK.len();
                    if at > 0 {
                        v.push((false, OK[..at].to_vec()));
                    }
                    v.push((false, OK[at..].to_vec()));
                }
                ops.push(v);
            }
            let mut n = Net::new(plans.len());
            for c in 0..plans.len() {
                n.open(c);
            }
            let mut next = vec![0usize; plans.len()];
            let mut picks = picks.into_iter();
            loop {
                let left: Vec<usize> = (0..plans.len()).filter(|c| next[*c] < ops[*c].len()).collect();
                if left.is_empty() {
                    break;
                }
                let c = left[picks.next().unwrap_or(0) % left.len()];
                let (client, data) = &ops[c][next[c]];
                next[c] += 1;
                if *client { n.client(c, data); } else { n.server(c, data); }
            }
            for (c, p) in plans.iter().enumerate() {
                if p.close {
                    n.close(c);
                }
            }
            let (out, r) = n.run();
            proptest::prop_assert!(sorted_by_time(&out), "{:?}", out.iter().map(|e| (e.ts_us, &e.request.uri)).collect::<Vec<_>>());
            let mut got: Vec<String> = out.iter().map(|e| e.request.uri.clone()).collect();
            got.sort();
            expected.sort();
            proptest::prop_assert_eq!(got, expected);
            proptest::prop_assert!(out.iter().all(|e| e.response.is_some()));
            proptest::prop_assert!(!r.notes.contains_key(order::NOTE_OUT_OF_ORDER), "{:?}", r);
            proptest::prop_assert_eq!(r.written, out.len() as u64);
        }
    }
}
