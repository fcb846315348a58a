//! The kernel-side filter of `capture`: a classic BPF program, built by hand, that keeps
//! TCP segments to or from the captured ports and drops everything else before it reaches
//! the ring, so the ring's room and the reader's time go to the traffic that matters.
//!
//! Pure acknowledgments (no payload, none of SYN, FIN or RST) are dropped too: the
//! reassembler places bytes by sequence number and learns both initial sequence numbers
//! from the SYN and the SYN-ACK (whose acknowledgment number names the client's), so a
//! segment that carries neither bytes nor one of those flags changes nothing in what it
//! produces; only its time would have kept a silent connection from counting as idle.
//! A segment whose lengths do not add up (a header longer than the packet) is kept, so the
//! pipeline counts it as malformed.
//!
//! The socket is `SOCK_DGRAM`, so the program sees the packet from its IP header on,
//! whatever the link layer. It reads:
//!
//! ```text
//!       ldb  [0]               ; version and header length
//!       and  #0xf0
//!       jeq  #0x40, v4, v6
//! v4:   ldb  [9]               ; protocol
//!       jeq  #6, 0, drop4      ; TCP only
//!       ldh  [6]               ; flags and fragment offset
//!       jset #0x1fff, drop4, 0 ; a later fragment carries no TCP header
//!       ldxb 4*([0]&0xf)       ; X = IPv4 header length
//!       ldh  [x+0]             ; source port
//!       jeq  #P1, ack4 / jeq #P2, ack4 ...
//!       ldh  [x+2]             ; destination port
//!       jeq  #P1, ack4 / ...   ; then drop4
//! ack4: ld len / sub x / jge #14, 0, keep4   ; too short for the flags: kept, to be counted
//!       ldb  [x+13]            ; TCP flags
//!       jset #0x07, keep4, 0   ; FIN, SYN or RST
//!       ldb  [x+12]            ; data offset
//!       and #0xf0 / rsh #2 / add x / tax   ; X = IP + TCP header length
//!       ldh  [2]               ; IP total length
//!       sub  x
//!       jeq  #0, drop4, keep4  ; no payload: a pure acknowledgment
//! keep4: ret #SNAP
//! drop4: ret #0
//! v6:   jeq  #0x60, 0, drop
//!       ldb  [6]               ; next header (no extension headers followed)
//!       jeq  #6, 0, drop
//!       ldh  [40] / ports as above, to ack6
//!       ldh  [42] / ports as above, to ack6, then drop
//! ack6: ld len / jge #54, 0, keep / ldb [53] / jset #0x07, keep, 0 / ldb [52] / and #0xf0 / rsh #2 / tax
//!       ldh  [4]               ; IPv6 payload length (TCP header and data)
//!       sub  x / jeq #0, drop, keep
//! keep: ret  #SNAP
//! drop: ret  #0
//! ```
//!
//! Each family's part ends with its own returns, so no jump crosses the other's port list
//! and the 8-bit jumps allow many ports.
//!
//! On a loopback device each packet passes twice, once leaving (`PACKET_OUTGOING`) and once
//! arriving; the program then starts with `ld pkttype; jeq #4, drop` so each is kept once.

/// One classic BPF instruction, as `struct sock_filter` lays it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset when the test holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

const LD_B_ABS: u16 = 0x30;
const LD_H_ABS: u16 = 0x28;
const LD_W_ABS: u16 = 0x20;
const LD_H_IND: u16 = 0x48;
const LD_B_IND: u16 = 0x50;
const LDX_B_MSH: u16 = 0xb1;
const ALU_AND_K: u16 = 0x54;
const ALU_RSH_K: u16 = 0x74;
const ALU_ADD_X: u16 = 0x0c;
const ALU_SUB_X: u16 = 0x1c;
const MISC_TAX: u16 = 0x07;
const LD_W_LEN: u16 = 0x80;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// TCP's FIN, SYN and RST flags.
const FIN_SYN_RST: u32 = 0x07;

/// Offset of the packet-type ancillary field (`SKF_AD_OFF + SKF_AD_PKTTYPE`).
const AD_PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
/// `PACKET_OUTGOING`.
const OUTGOING: u32 = 4;

/// A jump target while the program is built: resolved once every instruction is placed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    At(Label),
}

/// The places jumps go to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Ack4,
    Keep4,
    Drop4,
    V6,
    Ack6,
    Keep,
    Drop,
}

struct Builder {
    insns: Vec<(u16, To, To, u32)>,
    labels: Vec<(Label, usize)>,
}

impl Builder {
    fn op(&mut self, code: u16, k: u32) {
        self.insns.push((code, To::Next, To::Next, k));
    }
    fn jump(&mut self, code: u16, k: u32, jt: To, jf: To) {
        self.insns.push((code, jt, jf, k));
    }
    /// `label` names the next instruction placed.
    fn label(&mut self, label: Label) {
        self.labels.push((label, self.insns.len()));
    }
    /// A port comparison for each port, on the port loaded; falls through when none matched.
    fn ports(&mut self, ports: &[u16], to: Label) {
        for p in ports {
            self.jump(JEQ_K, u32::from(*p), To::At(to), To::Next);
        }
    }
    /// `ret #k`.
    fn ret(&mut self, k: u32) {
        self.op(RET_K, k);
    }
}

/// The most ports one program compares (a limit of the command line, kept since the first
/// filter, whose jumps crossed both port lists).
pub const MAX_PORTS: usize = 59;

/// Builds the filter for TCP `ports`, keeping `snap` bytes of each packet; `loopback` drops
/// the outgoing copy of each packet. `None` for more than [`MAX_PORTS`] ports.
pub fn program(ports: &[u16], snap: u32, loopback: bool) -> Option<Vec<Insn>> {
    if ports.len() > MAX_PORTS {
        return None;
    }
    use Label::*;
    let at = To::At;
    let mut b = Builder {
        insns: Vec::new(),
        labels: Vec::new(),
    };
    if loopback {
        b.op(LD_W_ABS, AD_PKTTYPE);
        b.jump(JEQ_K, OUTGOING, at(Drop4), To::Next);
    }
    b.op(LD_B_ABS, 0);
    b.op(ALU_AND_K, 0xf0);
    b.jump(JEQ_K, 0x40, To::Next, at(V6));
    b.op(LD_B_ABS, 9);
    b.jump(JEQ_K, 6, To::Next, at(Drop4));
    b.op(LD_H_ABS, 6);
    b.jump(JSET_K, 0x1fff, at(Drop4), To::Next);
    b.op(LDX_B_MSH, 0);
    b.op(LD_H_IND, 0);
    b.ports(ports, Ack4);
    b.op(LD_H_IND, 2);
    b.ports(ports, Ack4);
    b.ret(0);
    b.label(Ack4);
    // A packet too short for the TCP flags is kept, for the pipeline to count: a load past
    // the end would end the program with a drop.
    b.op(LD_W_LEN, 0);
    b.op(ALU_SUB_X, 0);
    b.jump(JGE_K, 14, To::Next, at(Keep4));
    b.op(LD_B_IND, 13);
    b.jump(JSET_K, FIN_SYN_RST, at(Keep4), To::Next);
    b.op(LD_B_IND, 12);
    b.op(ALU_AND_K, 0xf0);
    b.op(ALU_RSH_K, 2);
    b.op(ALU_ADD_X, 0);
    b.op(MISC_TAX, 0);
    b.op(LD_H_ABS, 2);
    b.op(ALU_SUB_X, 0);
    b.jump(JEQ_K, 0, at(Drop4), at(Keep4));
    b.label(Keep4);
    b.ret(snap);
    b.label(Drop4);
    b.ret(0);
    b.label(V6);
    b.jump(JEQ_K, 0x60, To::Next, at(Drop));
    b.op(LD_B_ABS, 6);
    b.jump(JEQ_K, 6, To::Next, at(Drop));
    b.op(LD_H_ABS, 40);
    b.ports(ports, Ack6);
    b.op(LD_H_ABS, 42);
    b.ports(ports, Ack6);
    b.ret(0);
    b.label(Ack6);
    b.op(LD_W_LEN, 0);
    b.jump(JGE_K, 40 + 14, To::Next, at(Keep));
    b.op(LD_B_ABS, 40 + 13);
    b.jump(JSET_K, FIN_SYN_RST, at(Keep), To::Next);
    b.op(LD_B_ABS, 40 + 12);
    b.op(ALU_AND_K, 0xf0);
    b.op(ALU_RSH_K, 2);
    b.op(MISC_TAX, 0);
    b.op(LD_H_ABS, 4);
    b.op(ALU_SUB_X, 0);
    b.jump(JEQ_K, 0, at(Drop), at(Keep));
    b.label(Keep);
    b.ret(snap);
    b.label(Drop);
    b.ret(0);
    let place = |l: Label| b.labels.iter().find(|(x, _)| *x == l).map(|(_, i)| *i);
    let mut out = Vec::with_capacity(b.insns.len());
    for (i, (code, jt, jf, k)) in b.insns.iter().enumerate() {
        let rel = |t: To| -> Option<u8> {
            match t {
                To::Next => Some(0),
                To::At(l) => u8::try_from(place(l)?.checked_sub(i + 1)?).ok(),
            }
        };
        out.push(Insn {
            code: *code,
            jt: rel(*jt)?,
            jf: rel(*jf)?,
            k: *k,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for the opcodes the program uses, so the filter's verdicts
    /// are checked on real packet bytes (the kernel runs the same instructions).
    fn run(prog: &[Insn], pkt: &[u8], pkttype: u32) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |at: usize| pkt.get(at).map(|b| u32::from(*b));
        let half = |at: usize| Some((byte(at)? << 8) | byte(at + 1)?);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS if i.k == AD_PKTTYPE => a = pkttype,
                LD_B_ABS => match byte(i.k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_H_ABS => match half(i.k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_H_IND => match half(x as usize + i.k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LDX_B_MSH => match byte(i.k as usize) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                LD_W_LEN => a = pkt.len() as u32,
                LD_B_IND => match byte(x as usize + i.k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                ALU_AND_K => a &= i.k,
                ALU_RSH_K => a >>= i.k,
                ALU_ADD_X => a = a.wrapping_add(x),
                ALU_SUB_X => a = a.wrapping_sub(x),
                MISC_TAX => x = a,
                JGE_K => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JSET_K => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
                RET_K => return i.k,
                c => panic!("opcode {c:#x} not expected"),
            }
        }
    }

    fn v4(proto: u8, frag: u16, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x46, 0, 0, 0, 0, 0];
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1, 1, 1, 1, 1]);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    fn v6(next: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 20, next, 64];
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    #[test]
    fn keeps_tcp_on_the_ports_and_nothing_else() {
        let prog = program(&[8080, 443], 65535, false).unwrap();
        assert_eq!(run(&prog, &v4(6, 0, 40000, 8080), 0), 65535);
        assert_eq!(run(&prog, &v4(6, 0, 443, 40000), 0), 65535);
        assert_eq!(run(&prog, &v4(6, 0x4000, 443, 40000), 0), 65535, "DF set");
        assert_eq!(run(&prog, &v4(6, 0, 40000, 80), 0), 0);
        assert_eq!(run(&prog, &v4(17, 0, 40000, 8080), 0), 0, "UDP");
        assert_eq!(run(&prog, &v4(6, 5, 40000, 8080), 0), 0, "later fragment");
        assert_eq!(run(&prog, &v6(6, 40000, 8080), 0), 65535);
        assert_eq!(run(&prog, &v6(6, 40000, 8081), 0), 0);
        assert_eq!(run(&prog, &v6(17, 40000, 8080), 0), 0);
        assert_eq!(run(&prog, &[], 0), 0);
        assert_eq!(run(&prog, &[0x45, 0, 0], 0), 0, "cut short");
        assert_eq!(run(&prog, &[0x70; 60], 0), 0, "not IP");
        let lo = program(&[8080], 100, true).unwrap();
        assert_eq!(run(&lo, &v4(6, 0, 40000, 8080), 0), 100);
        assert_eq!(run(&lo, &v4(6, 0, 40000, 8080), OUTGOING), 0);
    }

    /// An IPv4 TCP segment with `flags`, a data offset of `doff` words and `payload`,
    /// whose total length field says `total` (the real length when `None`).
    fn seg4(flags: u8, doff: u8, payload: &[u8], total: Option<u16>) -> Vec<u8> {
        let real = (20 + 4 * usize::from(doff).max(5) + payload.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.unwrap_or(real).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&8080u16.to_be_bytes());
        p.extend_from_slice(&[
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            1,
            doff << 4,
            flags,
            0xff,
            0xff,
            0,
            0,
            0,
            0,
        ]);
        p.resize(20 + 4 * usize::from(doff).max(5), 0);
        p.extend_from_slice(payload);
        p
    }

    fn seg6(flags: u8, doff: u8, payload: &[u8]) -> Vec<u8> {
        let len = (4 * usize::from(doff).max(5) + payload.len()) as u16;
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[6, 64]);
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&8080u16.to_be_bytes());
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&[
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            1,
            doff << 4,
            flags,
            0xff,
            0xff,
            0,
            0,
            0,
            0,
        ]);
        p.resize(40 + 4 * usize::from(doff).max(5), 0);
        p.extend_from_slice(payload);
        p
    }

    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;

    #[test]
    fn pure_acknowledgments_are_dropped_and_every_other_segment_kept() {
        let prog = program(&[8080], 65535, false).unwrap();
        let keep = |p: &[u8]| run(&prog, p, 0) == 65535;
        // Dropped: no payload and none of SYN, FIN, RST; with options (doff 8) too, and
        // with link padding after a packet whose IP length says it carries nothing.
        assert!(!keep(&seg4(ACK, 5, b"", None)));
        assert!(!keep(&seg4(ACK, 8, b"", None)));
        let mut padded = seg4(ACK, 5, b"", None);
        padded.extend_from_slice(&[0; 6]);
        assert!(!keep(&padded));
        assert!(!keep(&seg6(ACK, 5, b"")));
        assert!(!keep(&seg6(ACK, 8, b"")));
        // Kept: data, and the flags the reassembler opens and closes streams with.
        assert!(keep(&seg4(ACK | PSH, 5, b"GET / HTTP/1.1\r\n\r\n", None)));
        assert!(keep(&seg4(ACK, 8, b"x", None)));
        for flags in [0x02, 0x12, 0x11, 0x01, 0x04, 0x14] {
            assert!(keep(&seg4(flags, 5, b"", None)), "flags {flags:#x}");
            assert!(keep(&seg6(flags, 5, b"")), "flags {flags:#x}");
        }
        assert!(keep(&seg6(ACK | PSH, 5, b"HTTP/1.1 200 OK\r\n")));
        // Hostile lengths are kept for the pipeline to count as malformed: a data offset
        // below the minimum or past the packet, an IP length shorter than the headers or
        // 0 (as large segments offloaded to the NIC may carry), a packet cut inside the
        // TCP header.
        assert!(keep(&seg4(ACK, 2, b"", Some(40))));
        assert!(keep(&seg4(ACK, 15, b"", Some(40))));
        assert!(keep(&seg4(ACK, 5, b"", Some(30))));
        assert!(keep(&seg4(ACK, 5, b"", Some(0))));
        assert!(keep(&seg4(ACK, 5, b"", None)[..30]));
        assert!(keep(&seg6(ACK, 5, b"")[..50]));
        let mut v6_jumbo = seg6(ACK, 5, b"");
        v6_jumbo[4..6].copy_from_slice(&[0, 0]);
        assert!(keep(&v6_jumbo));
        // Segments on other ports are still dropped, whatever they carry.
        let mut other = seg4(ACK | PSH, 5, b"data", None);
        other[22..24].copy_from_slice(&9999u16.to_be_bytes());
        assert!(!keep(&other));
    }

    #[test]
    fn more_ports_than_the_limit_are_refused_and_the_limit_fits_the_jumps() {
        let most: Vec<u16> = (1..=MAX_PORTS as u16).collect();
        let prog = program(&most, 1, true).unwrap();
        for p in [1, MAX_PORTS as u16] {
            assert_eq!(run(&prog, &v4(6, 0, 40000, p), 0), 1);
            assert_eq!(run(&prog, &v6(6, p, 40000), 0), 1);
        }
        let n = (1..=200u16)
            .take_while(|n| program(&(1..=*n).collect::<Vec<_>>(), 1, true).is_some())
            .count();
        assert_eq!(n, MAX_PORTS);
        let ports: Vec<u16> = (1..=200).collect();
        assert!(program(&ports, 1, true).is_none());
    }
}
