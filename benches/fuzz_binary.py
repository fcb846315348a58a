"""The mutation loop of benches/fuzz_binary.sh (see there for what it does and how to run it).

Reads BIN, OUT and DURATION from the environment, SEED and HANG_SECONDS optionally.
"""

import gzip
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = os.path.abspath(os.environ["BIN"])
OUT = Path(os.environ["OUT"]).resolve()
LIMIT_AS = "2000000000"
HANG = int(os.environ.get("HANG_SECONDS", "20"))
SEED = int(os.environ.get("SEED", str(random.randrange(1 << 32))))
GOR_SEP = "\U0001f435\U0001f648\U0001f649".encode()


def seconds(text):
    m = re.fullmatch(r"(\d+)\s*([smh]?)", text.strip())
    if not m:
        sys.exit(f"fuzz_binary: DURATION {text!r}: expected seconds, or a number with s, m or h")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def run(args, timeout=HANG, stdin=None):
    """Runs the binary under the address-space limit and the timeout."""
    cmd = [
        "timeout", "--kill-after=5", str(timeout),
        "prlimit", f"--as={LIMIT_AS}", "--",
        BIN, *args,
    ]
    env = dict(os.environ, NO_COLOR="1", RUST_BACKTRACE="1")
    started = time.monotonic()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=env, cwd=WORK)
    return p.returncode, p.stderr, time.monotonic() - started


def classify(code, stderr, elapsed):
    if b"panicked at" in stderr or code == 101:
        return "panic"
    if code == 124 or (code == 137 and elapsed >= HANG):
        return "hang"
    if code is not None and 0 <= code <= 3:
        return "clean"
    if code >= 128 or code < 0:
        return "abort"
    return "other"


# ---------------------------------------------------------------------------------------
# Seeds

WORK = OUT / "work"


def make_seeds():
    """Seed inputs by kind: the fixtures, and what the binary itself writes."""
    seeds = {k: [] for k in ("har", "pcap", "gor", "recording", "result", "config", "rules")}
    fixtures = ROOT / "tests" / "fixtures"
    for f in sorted(fixtures.iterdir()):
        if f.suffix == ".har":
            seeds["har"].append(f.read_bytes())
        elif f.suffix in (".pcap", ".pcapng"):
            seeds["pcap"].append(f.read_bytes())
    shared = ROOT.parent / "shared" / "fixtures"
    if shared.is_dir():
        for f in sorted(shared.glob("*.gor")):
            seeds["gor"].append(f.read_bytes()[: 1 << 20])
    seeds["gor"].append(
        b"1 a1 1690000000000000000 0\nGET /api/users/7?x=1 HTTP/1.1\r\nHost: h\r\n\r\n\n"
        + GOR_SEP + b"\n"
        + b"2 a1 1690000000100000000 100000000\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\n"
        + GOR_SEP + b"\n"
        + b"1 b2 1690000000200000000 0\nPOST /api/orders HTTP/1.1\r\nHost: h\r\n"
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\n"
        + GOR_SEP + b"\n"
        + b"2 b2 1690000000300000000 0\nHTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
        + b"Content-Length: 11\r\n\r\n{\"id\":\"b2\"}\n"
        + GOR_SEP + b"\n"
    )
    demo = (ROOT / "recordings" / "demo.jsonl").read_bytes()
    # The first 60 exchanges: the whole file would make each run read 560 of them.
    seeds["recording"].append(b"".join(demo.splitlines(keepends=True)[:61]))
    seeds["config"].append((ROOT / "shadowdiff.example.toml").read_bytes())
    seeds["rules"].append(
        b"# routes of the new gateway\nGET /api/users/*\nGET /api/search\n/api/cart/\n"
        b"POST /api/orders*\n/rpc/catalog/GetItem\n"
    )
    # Two results: `merge` refuses the same result twice before it reads any histogram.
    for i in range(2):
        result = WORK / f"demo-result{i}.json"
        code, err, _ = run(["--quiet", "demo", "--json", str(result)], timeout=120)
        if code != 0:
            sys.exit(f"fuzz_binary: shadowdiff demo failed (exit {code}): {err.decode(errors='replace')}")
        seeds["result"].append(result.read_bytes())
    # More recordings, plain and zstd, written by the binary's own importer.
    for i, har in enumerate(seeds["har"][:2]):
        src = WORK / f"seed{i}.har"
        src.write_bytes(har)
        for ext in ("jsonl", "jsonl.zst"):
            dst = WORK / f"seed{i}.{ext}"
            code, err, _ = run(["--quiet", "import", "--from", "har", str(src), "--out", str(dst)])
            if code == 0 and dst.exists():
                seeds["recording"].append(dst.read_bytes())
    return seeds


# ---------------------------------------------------------------------------------------
# Mutations

INTERESTING = [b"0", b"-1", b"4294967295", b"18446744073709551616", b"1e309", b"-0",
               b"99999999999999999999999999999999", b"NaN", b"1.7976931348623157e308",
               b"65535", b"65536", b"2147483648", b"0.0000000000000000001"]
TOKENS = [b"\"", b"\\", b"\\u", b"\\ud800", b"{", b"}", b"[", b"]", b":", b",", b"\n", b"\r\n",
          b"\r\n\r\n", b"\x00", b"\xff", b"\xc3", b"null", b"true", b"%", b"*", b"$", b"$..",
          GOR_SEP, b"\n" + GOR_SEP + b"\n", b"Content-Length: 99999999999\r\n",
          b"Transfer-Encoding: chunked\r\n", b"ffffffffffffffff\r\n", b"{id}", b"/",
          b"HTTP/1.1 200 OK\r\n", b"GET / HTTP/1.1\r\n", b"base64", b"gzip", b"zstd",
          b"\"body_encoding\":\"base64\"", b"grpc-status", b"application/grpc",
          b"content-encoding", b"HISTEw", b"HISTFA", b"[[ignore]]\npaths=[\"$.a\"]\n",
          b"[missing_rule]\nbody=\"", b"\xef\xbb\xbf", b"1970-01-01T00:00:00Z",
          b"9999-12-31T23:59:59.999999999Z", b"\t", b"\x1b[2J"]


def bit_flips(d, rng):
    d = bytearray(d)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        if d:
            d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
    return bytes(d)


def byte_sets(d, rng):
    d = bytearray(d)
    for _ in range(rng.choice([1, 2, 8])):
        if d:
            d[rng.randrange(len(d))] = rng.choice([0, 0xff, 0x7f, 0x80, 0x20, 0x0a, 0x22, 0x5c])
    return bytes(d)


def truncate(d, rng):
    return d[: rng.randrange(len(d) + 1)]


def splice(d, rng, other):
    a = rng.randrange(len(d) + 1)
    b = rng.randrange(len(other) + 1)
    return d[:a] + other[b:]


def insert_token(d, rng):
    at = rng.randrange(len(d) + 1)
    return d[:at] + rng.choice(TOKENS) + d[at:]


def delete_span(d, rng):
    if not d:
        return d
    a = rng.randrange(len(d))
    return d[:a] + d[a + rng.randrange(1, 64):]


def duplicate_span(d, rng):
    if not d:
        return d
    a = rng.randrange(len(d))
    span = d[a:a + rng.randrange(1, 256)]
    return d[:a] + span * rng.choice([2, 10, 1000]) + d[a:]


def long_line(d, rng):
    at = rng.randrange(len(d) + 1)
    n = rng.choice([4096, 65_533, 65_536, 70_000, 1 << 20, 3 << 20])
    return d[:at] + bytes([rng.choice(b"az/%\\\"0 ")]) * n + d[at:]


def long_string_value(d, rng):
    """Makes a JSON string value (or a quoted TOML value) very long."""
    quotes = [m.end() for m in re.finditer(rb'":"|" = "|":\s"', d[:1 << 20])]
    if not quotes:
        return long_line(d, rng)
    # After the value's first character half the time, so a path keeps its leading `/`.
    at = min(rng.choice(quotes) + rng.randrange(2), len(d))
    n = rng.choice([65_536, 1 << 20, 5 << 20])
    return d[:at] + b"a" * n + d[at:]


def deep_nesting(d, rng):
    at = rng.randrange(len(d) + 1)
    n = rng.choice([200, 1000, 100_000])
    open_, close = rng.choice([(b"[", b"]"), (b"{\"a\":", b"}"), (b"[{\"x\":", b"}]")])
    closes = close * n if rng.random() < 0.5 else b""
    return d[:at] + open_ * n + b"1" + closes + d[at:]


def huge_number(d, rng):
    nums = [m for m in re.finditer(rb"-?\d+(\.\d+)?", d[:1 << 20])]
    if not nums:
        return insert_token(d, rng)
    m = rng.choice(nums)
    new = rng.choice(INTERESTING) if rng.random() < 0.8 else b"9" * rng.choice([400, 5000, 100_000])
    return d[:m.start()] + new + d[m.end():]


def max_length_field(d, rng):
    """Sets a 4-byte field to a huge value: pcap record lengths, gRPC and HDR prefixes."""
    if len(d) < 8:
        return d
    at = rng.randrange(len(d) - 4)
    d = bytearray(d)
    d[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00",
                               b"\x00\x00\x01\x00", b"\xff\xff\xff\x7f"])
    return bytes(d)


def histogram(d, rng):
    """Replaces an `hdr` histogram of a result with a crafted one."""
    import base64
    import struct
    hdrs = [m for m in re.finditer(rb'"hdr(_slower|_faster)?":\s*"([A-Za-z0-9+/=]*)"', d)]
    if not hdrs:
        return bit_flips(d, rng)
    m = rng.choice(hdrs)
    raw = bytearray(base64.b64decode(m.group(2)) or b"\x1c\x84\x93\x13")
    choice = rng.random()
    if choice < 0.3:
        crafted = struct.pack(">IIIIQQd", 0x1C849313, rng.choice([0xFFFFFFFF, 1 << 30, 40]),
                              0, rng.choice([3, 5, 255]), 1, rng.choice([3600000000, 1 << 62]),
                              1.0) + b"\x00" * rng.randrange(4)
    elif choice < 0.6 and len(raw) > 8:
        raw[4:8] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x01"])
        crafted = bytes(raw)
    else:
        crafted = bit_flips(bytes(raw), rng)
    return d[:m.start(2)] + base64.b64encode(crafted) + d[m.end(2):]


def regex_body(d, rng):
    """A long or heavy `[missing_rule] body` regex in a rules file."""
    pattern = rng.choice([
        "a" * rng.choice([5000, 100_000, 2_000_000, 6_000_000]) + "|b",
        "(a{1000}){1000}", "((a*)*)*b", "\\p{L}{500}", "[" * 300, "(" * 300 + ")" * 300,
        "x{4294967295}", "(?i)" + "\\w+" * 2000,
    ])
    m = re.search(rb'body = "[^"\n]*"', d)
    if not m:
        return d + b"\n[missing_rule]\nbody = '" + pattern.encode() + b"'\n"
    return d[:m.start()] + b"body = '" + pattern.encode() + b"'" + d[m.end():]


MUTATORS = [
    (bit_flips, 8), (byte_sets, 4), (truncate, 4), (insert_token, 8), (delete_span, 3),
    (duplicate_span, 3), (long_line, 2), (long_string_value, 2), (deep_nesting, 2),
    (huge_number, 4), (max_length_field, 3),
]


def mutate(kind, seed, seeds, rng):
    d = seed
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        roll = rng.random()
        if kind == "result" and roll < 0.15:
            d = histogram(d, rng)
        elif kind == "config" and roll < 0.1:
            d = regex_body(d, rng)
        elif roll < 0.2:
            d = splice(d, rng, rng.choice(seeds[kind]))
        else:
            fns, weights = zip(*MUTATORS)
            d = rng.choices(fns, weights)[0](d, rng)
    return d


def wrap(kind, data, rng):
    """Optionally gzips the input (the importers undo it whatever the name), corrupts the
    compressed stream, or makes a small gzip file that expands a long way."""
    if kind not in ("har", "pcap", "gor") or rng.random() > 0.25:
        return data, ""
    roll = rng.random()
    if roll < 0.1:
        # 1 MiB members repeated: a few hundred KB on disk, up to 600 MB of content, at a
        # random place or inside a string value.
        values = [m.end() for m in re.finditer(rb'":\s*"', data[:1 << 20])]
        at = rng.choice(values) if values and rng.random() < 0.5 else rng.randrange(len(data) + 1)
        member = gzip.compress(bytes([rng.choice(b"aaa0 \"\\")]) * (1 << 20), 6)
        return (gzip.compress(data[:at]) + member * rng.choice([64, 300, 600])
                + gzip.compress(data[at:]), ".gz")
    z = gzip.compress(data, 6)
    if roll < 0.6:
        z = bit_flips(z, rng) if rng.random() < 0.5 else truncate(z, rng)
    return z, ".gz"


# ---------------------------------------------------------------------------------------
# Commands


def commands(kind, path, good):
    """Command lines that read `path`, a mutated input of `kind`."""
    p = str(path)
    out = str(WORK / "out")
    if kind in ("har", "pcap", "gor"):
        return [["import", "--from", kind, p, "--out", out + ".jsonl"],
                ["import", "--from", kind, p, "--out", out + ".jsonl.zst", "--strict"]]
    if kind == "recording":
        return [["interfaces", p], ["interfaces", p, "--rules", good["rules"], "--json", "-"],
                ["interfaces", p, "--interface", "json:/a/b", "--tenant-header", "x-tenant",
                 "--skip-bad-lines"],
                ["show", p, "--id", "demo-000002"], ["show", p, "--id", "har-1"]]
    if kind == "result":
        return [["report", p],
                ["report", p, "--html", out + ".html", "--junit", out + ".xml",
                 "--markdown", out + ".md", "--json", out + ".json"],
                ["merge", p, "--json", out + ".json"],
                ["merge", p, good["result2"], "--json", out + ".json"],
                ["report", good["result"], "--previous", p]]
    if kind == "config":
        return [["replay", good["recording"], "--baseline", "http://127.0.0.1:1",
                 "--candidate", "http://127.0.0.1:1", "--config", p],
                ["show", good["recording"], "--id", "demo-000002", "--config", p]]
    if kind == "rules":
        return [["interfaces", good["recording"], "--rules", p]]
    raise ValueError(kind)


EXT = {"har": ".har", "pcap": ".pcap", "gor": ".gor", "recording": ".jsonl",
       "result": ".json", "config": ".toml", "rules": ".txt"}


def main():
    duration = seconds(os.environ["DURATION"])
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "failures").mkdir(parents=True)
    WORK.mkdir(parents=True)
    print(f"fuzz_binary: {BIN}, {duration} s, seed {SEED}, failing inputs under {OUT / 'failures'}",
          flush=True)
    rng = random.Random(SEED)
    seeds = make_seeds()
    good = {}
    for kind in ("rules", "result", "recording"):
        g = WORK / f"good{EXT[kind]}"
        g.write_bytes(seeds[kind][0])
        good[kind] = str(g)
    g = WORK / "good2.json"
    g.write_bytes(seeds["result"][1])
    good["result2"] = str(g)
    kinds = [k for k in seeds if seeds[k]]
    counts = {c: 0 for c in ("clean", "panic", "abort", "hang", "other")}
    exits = {}
    unnamed = 0
    runs = 0
    started = time.monotonic()
    last_report = started
    n_input = 0
    while time.monotonic() - started < duration:
        kind = rng.choice(kinds)
        data = mutate(kind, rng.choice(seeds[kind]), seeds, rng)
        if kind == "recording" and rng.random() < 0.2:
            # A zstd recording is recognised by its magic, whatever its name.
            zsts = [s for s in seeds["recording"] if s[:4] == b"\x28\xb5\x2f\xfd"]
            if zsts:
                data = bit_flips(rng.choice(zsts), rng) if rng.random() < 0.7 else truncate(rng.choice(zsts), rng)
        data, gz = wrap(kind, data, rng)
        n_input += 1
        path = WORK / f"input{EXT[kind]}{gz}"
        path.write_bytes(data)
        for args in commands(kind, path, good):
            if time.monotonic() - started >= duration:
                break
            code, stderr, elapsed = run(args)
            runs += 1
            cls = classify(code, stderr, elapsed)
            counts[cls] += 1
            if cls == "clean":
                exits[code] = exits.get(code, 0) + 1
                if code == 2 and path.name.encode() not in stderr:
                    unnamed += 1
                    save(f"unnamed-{unnamed}", path, args, code, stderr)
            else:
                save(f"{cls}-{counts[cls]}", path, args, code, stderr)
                print(f"fuzz_binary: {cls}: shadowdiff {' '.join(a if len(a) < 80 else a[:77] + '...' for a in args)} (exit {code})",
                      flush=True)
        if time.monotonic() - last_report >= 60:
            last_report = time.monotonic()
            print(f"fuzz_binary: {int(last_report - started)} s: {summary(runs, counts, exits, unnamed)}",
                  flush=True)
    elapsed = int(time.monotonic() - started)
    print(f"fuzz_binary: done after {elapsed} s, {n_input} inputs, seed {SEED}: "
          f"{summary(runs, counts, exits, unnamed)}; failing inputs under {OUT / 'failures'}",
          flush=True)
    shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(1 if counts["panic"] or counts["abort"] or counts["hang"] or counts["other"] else 0)


def summary(runs, counts, exits, unnamed):
    by_exit = ", ".join(f"exit {c}: {n}" for c, n in sorted(exits.items()))
    return (f"{runs} runs: clean {counts['clean']} ({by_exit}), panic {counts['panic']}, "
            f"abort {counts['abort']}, hang {counts['hang']}, other {counts['other']}; "
            f"exit 2 not naming the input {unnamed}")


def save(name, path, args, code, stderr):
    d = OUT / "failures" / name
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, d / path.name)
    for a in args:
        if a.startswith(str(WORK)) and a != str(path) and os.path.isfile(a) and "good" in a:
            shutil.copy(a, d / os.path.basename(a))
    (d / "command").write_text(
        "shadowdiff " + " ".join(a.replace(str(WORK), ".") for a in args) + f"\n# exit {code}\n")
    (d / "stderr").write_bytes(stderr[:1 << 20])


if __name__ == "__main__":
    main()
