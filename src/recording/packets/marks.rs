//! Capture times of the pieces of one reassembled byte stream: which packet carried a
//! given stream offset, so that a message's time is that of its first packet, whichever
//! parser (HTTP/1 or HTTP/2) reads it.

use std::collections::VecDeque;

/// (stream offset one past a delivered piece, its capture time), oldest first.
#[derive(Default)]
pub(crate) struct Marks(VecDeque<(u64, i64)>);

impl Marks {
    /// Bytes up to stream offset `end` arrived at `ts_us`. Pieces with the same time share
    /// one mark, so a peer sending a byte at a time within one packet batch costs one mark,
    /// not one per byte.
    pub fn push(&mut self, end: u64, ts_us: i64) {
        match self.0.back_mut() {
            Some((e, ts)) if *ts == ts_us => *e = end,
            _ => self.0.push_back((end, ts_us)),
        }
    }

    /// Capture time of the piece that carried stream offset `off` (the newest piece's for
    /// an offset past them all; 0 before any).
    pub fn ts_at(&self, off: u64) -> i64 {
        self.0
            .iter()
            .find(|(end, _)| *end > off)
            .or(self.0.back())
            .map_or(0, |(_, ts)| *ts)
    }

    /// Forgets the pieces wholly before stream offset `upto`, the newest kept whatever
    /// its end, so later offsets still have a time.
    pub fn drop_upto(&mut self, upto: u64) {
        while self.0.len() > 1 && self.0.front().is_some_and(|(end, _)| *end <= upto) {
            self.0.pop_front();
        }
    }

    /// Bytes the marks take, for the bound on what connections hold.
    pub fn held(&self) -> usize {
        self.0.len() * std::mem::size_of::<(u64, i64)>()
    }

    /// `bytes`, which start at stream offset `base`, cut at the pieces' ends, each cut with
    /// the capture time of the piece it came in.
    pub fn pieces<'a>(
        &'a self,
        base: u64,
        bytes: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], i64)> {
        let mut from = 0usize;
        self.0.iter().filter_map(move |(end, ts)| {
            let to = (end.saturating_sub(base) as usize).min(bytes.len());
            (to > from).then(|| {
                let piece = &bytes[from..to];
                from = to;
                (piece, *ts)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_follow_the_pieces_and_survive_being_dropped_up_to_the_newest() {
        let mut m = Marks::default();
        assert_eq!(m.ts_at(0), 0);
        m.push(3, 10);
        m.push(5, 10); // the same batch: one mark
        m.push(9, 20);
        assert_eq!(m.held(), 2 * 16);
        assert_eq!(
            (m.ts_at(0), m.ts_at(4), m.ts_at(5), m.ts_at(100)),
            (10, 10, 20, 20)
        );
        let cut: Vec<(&[u8], i64)> = m.pieces(2, b"abcdefg").collect();
        assert_eq!(cut, [(&b"abc"[..], 10), (&b"defg"[..], 20)]);
        m.drop_upto(5);
        assert_eq!(m.ts_at(0), 20);
        m.drop_upto(100);
        assert_eq!(m.ts_at(100), 20, "the newest mark is kept");
    }
}
