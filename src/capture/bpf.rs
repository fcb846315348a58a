//! The kernel-side filter of `capture`: a classic BPF program, built by hand, that keeps
//! TCP segments to or from the captured ports and drops everything else before it reaches
//! the ring, so the ring's room and the reader's time go to the traffic that matters.
//!
//! The socket is `SOCK_DGRAM`, so the program sees the packet from its IP header on,
//! whatever the link layer. It reads:
//!
//! ```text
//!       ldb  [0]               ; version and header length
//!       and  #0xf0
//!       jeq  #0x40, v4, v6
//! v4:   ldb  [9]               ; protocol
//!       jeq  #6, 0, drop       ; TCP only
//!       ldh  [6]               ; flags and fragment offset
//!       jset #0x1fff, drop, 0  ; a later fragment carries no TCP header
//!       ldxb 4*([0]&0xf)       ; X = IPv4 header length
//!       ldh  [x+0]             ; source port
//!       jeq  #P1, keep / jeq #P2, keep ...
//!       ldh  [x+2]             ; destination port
//!       jeq  #P1, keep / ...   ; then drop
//! v6:   jeq  #0x60, 0, drop
//!       ldb  [6]               ; next header (no extension headers followed)
//!       jeq  #6, 0, drop
//!       ldh  [40] / ports as above
//!       ldh  [42] / ports as above, then drop
//! keep: ret  #SNAP
//! drop: ret  #0
//! ```
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
const LDX_B_MSH: u16 = 0xb1;
const ALU_AND_K: u16 = 0x54;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// Offset of the packet-type ancillary field (`SKF_AD_OFF + SKF_AD_PKTTYPE`).
const AD_PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
/// `PACKET_OUTGOING`.
const OUTGOING: u32 = 4;

/// A jump target while the program is built: resolved once every instruction is placed.
#[derive(Clone, Copy)]
enum To {
    Next,
    Keep,
    Drop,
    V6,
}

struct Builder {
    insns: Vec<(u16, To, To, u32)>,
}

impl Builder {
    fn op(&mut self, code: u16, k: u32) {
        self.insns.push((code, To::Next, To::Next, k));
    }
    fn jump(&mut self, code: u16, k: u32, jt: To, jf: To) {
        self.insns.push((code, jt, jf, k));
    }
    /// A port comparison for each port, on the port loaded; falls through when none matched.
    fn ports(&mut self, ports: &[u16]) {
        for p in ports {
            self.jump(JEQ_K, u32::from(*p), To::Keep, To::Next);
        }
    }
}

/// The most ports one program can compare (its jumps are 8-bit).
pub const MAX_PORTS: usize = 59;

/// Builds the filter for TCP `ports`, keeping `snap` bytes of each packet; `loopback` drops
/// the outgoing copy of each packet. `None` when the program would be too long for the
/// kernel's 8-bit jumps (more than [`MAX_PORTS`]).
pub fn program(ports: &[u16], snap: u32, loopback: bool) -> Option<Vec<Insn>> {
    let mut b = Builder { insns: Vec::new() };
    if loopback {
        b.op(LD_W_ABS, AD_PKTTYPE);
        b.jump(JEQ_K, OUTGOING, To::Drop, To::Next);
    }
    b.op(LD_B_ABS, 0);
    b.op(ALU_AND_K, 0xf0);
    b.jump(JEQ_K, 0x40, To::Next, To::V6);
    b.op(LD_B_ABS, 9);
    b.jump(JEQ_K, 6, To::Next, To::Drop);
    b.op(LD_H_ABS, 6);
    b.jump(JSET_K, 0x1fff, To::Drop, To::Next);
    b.op(LDX_B_MSH, 0);
    b.op(LD_H_IND, 0);
    b.ports(ports);
    b.op(LD_H_IND, 2);
    b.ports(ports);
    b.jump(JEQ_K, u32::MAX, To::Drop, To::Drop);
    let v6 = b.insns.len();
    b.jump(JEQ_K, 0x60, To::Next, To::Drop);
    b.op(LD_B_ABS, 6);
    b.jump(JEQ_K, 6, To::Next, To::Drop);
    b.op(LD_H_ABS, 40);
    b.ports(ports);
    b.op(LD_H_ABS, 42);
    b.ports(ports);
    b.jump(JEQ_K, u32::MAX, To::Drop, To::Drop);
    let keep = b.insns.len();
    let drop = keep + 1;
    let mut out = Vec::with_capacity(drop + 1);
    for (i, (code, jt, jf, k)) in b.insns.iter().enumerate() {
        let rel = |t: To| -> Option<u8> {
            let at = match t {
                To::Next => return Some(0),
                To::Keep => keep,
                To::Drop => drop,
                To::V6 => v6,
            };
            u8::try_from(at - i - 1).ok()
        };
        out.push(Insn {
            code: *code,
            jt: rel(*jt)?,
            jf: rel(*jf)?,
            k: *k,
        });
    }
    out.push(Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: snap,
    });
    out.push(Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    });
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
                ALU_AND_K => a &= i.k,
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

    #[test]
    fn too_many_ports_for_8_bit_jumps_is_refused() {
        let n = (1..=200u16)
            .take_while(|n| program(&(1..=*n).collect::<Vec<_>>(), 1, true).is_some())
            .count();
        assert_eq!(n, MAX_PORTS);
        let ports: Vec<u16> = (1..=200).collect();
        assert!(program(&ports, 1, true).is_none());
    }
}
