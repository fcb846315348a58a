//! Recording format v1 (DESIGN.md): JSON Lines, a header line then one exchange per line,
//! zstd when the name ends in `.zst`. [`format`] defines the lines, [`reader`] streams one or
//! several files in timestamp order, [`writer`] writes a file safely, [`import`] turns
//! other tools' captures (gor, HAR, pcap) into recordings, [`packets`] turns packets (a
//! pcap file's, or a live capture's) into exchanges.

pub mod format;
pub mod import;
mod line;
pub mod packets;
pub mod reader;
pub(crate) mod streamed;
pub mod writer;
mod zst;

pub use format::{LineError, RecordingHeader, FORMAT_VERSION};
pub use reader::{FileReader, ReadOptions, RecordingReader};
pub use writer::RecordingWriter;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::exchange::{Exchange, Request};
    use std::io::Write;
    use std::path::PathBuf;

    fn ex(id: &str, ts: i64) -> Exchange {
        Exchange {
            id: id.into(),
            ts_us: ts,
            interface: None,
            tenant: None,
            request: Request {
                method: "GET".into(),
                uri: format!("/x/{id}"),
                version: "HTTP/1.1".into(),
                ..Default::default()
            },
            response: None,
            latency_us: None,
        }
    }

    fn write_file(dir: &std::path::Path, name: &str, items: &[Exchange]) -> PathBuf {
        let path = dir.join(name);
        let mut w = RecordingWriter::create(&path, &RecordingHeader::new("test")).unwrap();
        for e in items {
            w.write(e).unwrap();
        }
        w.finish().unwrap()
    }

    fn ids(r: RecordingReader) -> Vec<String> {
        r.map(|e| e.unwrap().id).collect()
    }

    #[test]
    fn plain_and_zstd_round_trip_and_merge_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_file(dir.path(), "a.jsonl", &[ex("a1", 10), ex("a2", 30)]);
        let b = write_file(dir.path(), "b.jsonl.zst", &[ex("b1", 20), ex("b2", 40)]);
        assert!(!writer::partial_path(&a).exists());
        let r = RecordingReader::open(&[a, b], ReadOptions::default()).unwrap();
        assert_eq!(ids(r), ["a1", "b1", "a2", "b2"]);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = write_file(dir.path(), "a.jsonl", &[ex("a1", 10)]);
        let mode = std::fs::metadata(a).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn truncated_last_line_is_skipped_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "t.jsonl", &[ex("a1", 10), ex("a2", 20)]);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(br#"{"id":"a3","ts":"2026-11-02T09:0"#).unwrap();
        let mut r = RecordingReader::open(&[path], ReadOptions::default()).unwrap();
        let mut got = Vec::new();
        while let Some(e) = r.next_exchange().unwrap() {
            got.push(e.id);
        }
        assert_eq!(got, ["a1", "a2"]);
        let w = r.take_warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("t.jsonl:4") && w[0].contains("incomplete"),
            "{w:?}"
        );
    }

    #[test]
    fn truncated_zstd_stream_keeps_what_was_whole() {
        let dir = tempfile::tempdir().unwrap();
        let items: Vec<_> = (0..2000).map(|i| ex(&format!("e{i}"), i)).collect();
        let path = write_file(dir.path(), "t.jsonl.zst", &items);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let mut r = RecordingReader::open(&[path], ReadOptions::default()).unwrap();
        let mut n = 0;
        while let Some(e) = r.next_exchange().unwrap() {
            assert_eq!(e.id, format!("e{n}"));
            n += 1;
        }
        assert!(n > 0 && n < 2000, "{n}");
        assert!(!r.take_warnings().is_empty());
    }

    #[test]
    fn bad_middle_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(
            &path,
            "{\"shadowdiff_recording\":1}\n{\"id\":\"a\",\"ts\":\"2026-11-02T09:00:00Z\",\"request\":{\"method\":\"GET\",\"uri\":\"/\"}}\nnot json\n{\"id\":\"b\",\"ts\":\"2026-11-02T09:00:01Z\",\"request\":{\"method\":\"GET\",\"uri\":\"/\"}}\n",
        )
        .unwrap();
        let r = RecordingReader::open(std::slice::from_ref(&path), ReadOptions::default()).unwrap();
        let err = r.collect::<Result<Vec<_>, _>>().unwrap_err();
        match &err {
            Error::Input {
                file,
                line,
                message,
            } => {
                assert_eq!(file, &path);
                assert_eq!(*line, 3);
                assert!(message.contains("not valid JSON"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let mut r = RecordingReader::open(
            &[path],
            ReadOptions {
                skip_bad_lines: true,
            },
        )
        .unwrap();
        let mut got = Vec::new();
        while let Some(e) = r.next_exchange().unwrap() {
            got.push(e.id);
        }
        assert_eq!(got, ["a", "b"]);
        assert_eq!(r.take_warnings().len(), 1);
    }

    const HEADER: &str = "{\"shadowdiff_recording\":1}\n";

    fn line(id: &str, ts: &str) -> String {
        format!(
            "{{\"id\":\"{id}\",\"ts\":\"2026-11-02T09:00:{ts}Z\",\"request\":{{\"method\":\"GET\",\"uri\":\"/{id}\"}}}}\n"
        )
    }

    /// Reads until the first error: the ids read before it, and the error.
    fn read_until_error(mut r: RecordingReader) -> (Vec<String>, Option<Error>) {
        let mut got = Vec::new();
        loop {
            match r.next_exchange() {
                Ok(Some(e)) => got.push(e.id),
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    fn input_line(e: &Option<Error>) -> u64 {
        match e {
            Some(Error::Input { line, .. }) => *line,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exchanges_before_a_bad_line_come_before_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.jsonl");
        let text = [HEADER, &line("a", "00"), "not json\n", &line("b", "01")].concat();
        std::fs::write(&bad, text).unwrap();
        let r = RecordingReader::open(std::slice::from_ref(&bad), ReadOptions::default()).unwrap();
        let (got, err) = read_until_error(r);
        assert_eq!(got, ["a"]);
        assert_eq!(input_line(&err), 3);

        // Merged with another file, the error takes the place of the exchange it hides.
        let other = dir.path().join("other.jsonl");
        let text = [HEADER, &line("x1", "00"), &line("x2", "05")].concat();
        std::fs::write(&other, text).unwrap();
        let r = RecordingReader::open(&[other, bad.clone()], ReadOptions::default()).unwrap();
        let (got, err) = read_until_error(r);
        assert_eq!(got, ["x1", "a"]);
        assert_eq!(input_line(&err), 3);

        // A bad first exchange does not stop the files opened beside it from being opened.
        let first = dir.path().join("first.jsonl");
        std::fs::write(&first, [HEADER, "{}\n"].concat()).unwrap();
        let r = RecordingReader::open(&[bad, first], ReadOptions::default()).unwrap();
        let (_, err) = read_until_error(r);
        assert!(err.is_some());
    }

    #[test]
    fn a_whole_last_line_that_is_wrong_is_an_error_even_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.jsonl");
        let bad_last = line("b", "01").replace("2026-11-02T09:00:01Z", "yesterday");
        let text = [HEADER, &line("a", "00"), bad_last.trim_end()].concat();
        std::fs::write(&path, text).unwrap();
        let mut r =
            RecordingReader::open(std::slice::from_ref(&path), ReadOptions::default()).unwrap();
        assert_eq!(r.next_exchange().unwrap().unwrap().id, "a");
        let e = r.next_exchange().unwrap_err().to_string();
        assert!(e.contains("last.jsonl:3: field ts"), "{e}");
        assert!(r.take_warnings().is_empty());
        let r = RecordingReader::open(
            &[path],
            ReadOptions {
                skip_bad_lines: true,
            },
        )
        .unwrap();
        assert_eq!(ids(r), ["a"]);
    }

    #[test]
    fn compression_is_recognised_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let zstd_named_plain = write_file(dir.path(), "z.jsonl.zst", &[ex("z1", 10)]);
        let plain_named_zstd = write_file(dir.path(), "p.jsonl", &[ex("p1", 20)]);
        let (z, p) = (dir.path().join("z.jsonl"), dir.path().join("p.jsonl.zst"));
        std::fs::rename(&zstd_named_plain, &z).unwrap();
        std::fs::rename(&plain_named_zstd, &p).unwrap();
        let r = RecordingReader::open(&[z, p], ReadOptions::default()).unwrap();
        assert_eq!(ids(r), ["z1", "p1"]);
    }

    #[test]
    fn a_corrupt_zstd_stream_gives_every_line_before_the_corruption_then_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let items: Vec<_> = (0..20_000).map(|i| ex(&format!("e{i}"), i)).collect();
        let path = write_file(dir.path(), "c.jsonl.zst", &items);
        let good = std::fs::read(&path).unwrap();
        let ends = zst::block_ends(&good);
        assert!(ends.len() > 6, "{ends:?}");
        // zstd's own reader loses the blocks decoded in the call that meets the corruption,
        // which depends on where the corrupt block falls: try several.
        for block in 2..6 {
            // The lines that end within the blocks before the corrupt one, which decode whole.
            let mut before = Vec::new();
            let mut r = zst::BlockReader::new(&good[..ends[block - 1]]).unwrap();
            let cut = std::io::Read::read_to_end(&mut r, &mut before).unwrap_err();
            assert_eq!(cut.kind(), std::io::ErrorKind::UnexpectedEof);
            let whole = before.iter().filter(|&&b| b == b'\n').count();
            let mut bytes = good.clone();
            let victim = (ends[block - 1] + ends[block]) / 2;
            for b in &mut bytes[victim..victim + 64] {
                *b ^= 0x5a;
            }
            std::fs::write(&path, &bytes).unwrap();
            let r =
                RecordingReader::open(std::slice::from_ref(&path), ReadOptions::default()).unwrap();
            let (got, err) = read_until_error(r);
            // The header and every exchange before the corrupt block.
            assert_eq!(got.len() + 1, whole, "corrupt block {block}");
            for (i, id) in got.iter().enumerate() {
                assert_eq!(id, &format!("e{i}"));
            }
            assert_eq!(input_line(&err), got.len() as u64 + 2);
            let msg = err.unwrap().to_string();
            assert!(
                msg.contains("c.jsonl.zst:") && msg.contains("corrupt zstd data"),
                "{msg}"
            );
        }
    }

    #[test]
    fn header_is_required_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.jsonl");
        std::fs::write(&p, "{\"id\":\"a\"}\n").unwrap();
        let e =
            RecordingReader::open(std::slice::from_ref(&p), ReadOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("h.jsonl:1: expected the header line"),
            "{e}"
        );
        std::fs::write(&p, "{\"shadowdiff_recording\":7}\n").unwrap();
        let e =
            RecordingReader::open(std::slice::from_ref(&p), ReadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("version 7"), "{e}");
        std::fs::write(&p, "").unwrap();
        let e = RecordingReader::open(&[p], ReadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("empty file"), "{e}");
    }
}
