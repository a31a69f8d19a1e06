//! Byte-level generators and mutators, and edge values for integers. Shared with
//! `crates/transport/tests` (included by path), so only `rand` is used.
#![allow(dead_code)]

use rand::Rng;
use rand::seq::SliceRandom;

/// Edge values of a u64 around which overflow and off-by-one bugs live.
pub const U64_EDGES: &[u64] = &[
    0,
    1,
    2,
    3,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX - 1,
    u64::MAX,
];

/// Edge values of a u32.
pub const U32_EDGES: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0x8000_0001,
    u32::MAX - 1,
    u32::MAX,
];

/// Edge values of an i64.
pub const I64_EDGES: &[i64] = &[
    0,
    1,
    -1,
    i32::MAX as i64,
    i32::MIN as i64,
    i64::MAX,
    i64::MAX - 1,
    i64::MIN,
    i64::MIN + 1,
];

/// Mostly an edge value, sometimes small, sometimes uniform.
pub fn any_u64<R: Rng + ?Sized>(rng: &mut R) -> u64 {
    match rng.gen_range(0..4) {
        0 | 1 => *U64_EDGES.choose(rng).expect("non-empty"),
        2 => rng.gen_range(0..1024),
        _ => rng.r#gen(),
    }
}

/// Mostly an edge value, sometimes small, sometimes uniform.
pub fn any_u32<R: Rng + ?Sized>(rng: &mut R) -> u32 {
    match rng.gen_range(0..4) {
        0 | 1 => *U32_EDGES.choose(rng).expect("non-empty"),
        2 => rng.gen_range(0..64),
        _ => rng.r#gen(),
    }
}

/// Mostly an edge value, sometimes small, sometimes uniform.
pub fn any_i64<R: Rng + ?Sized>(rng: &mut R) -> i64 {
    match rng.gen_range(0..4) {
        0 | 1 => *I64_EDGES.choose(rng).expect("non-empty"),
        2 => rng.gen_range(-1024..1024),
        _ => rng.r#gen(),
    }
}

/// `base` plus or minus a little, or an edge value.
pub fn near_u64<R: Rng + ?Sized>(rng: &mut R, base: u64) -> u64 {
    match rng.gen_range(0..6) {
        0 => base,
        1 => base.wrapping_add(1),
        2 => base.wrapping_sub(1),
        3 => base.wrapping_add(rng.gen_range(0..100)),
        4 => base.wrapping_sub(rng.gen_range(0..100)),
        _ => any_u64(rng),
    }
}

/// A length biased towards small values with occasional large ones.
pub fn any_len<R: Rng + ?Sized>(rng: &mut R, max: usize) -> usize {
    let cap = match rng.gen_range(0..10) {
        0..=5 => 16,
        6..=8 => 256,
        _ => max,
    };
    rng.gen_range(0..=cap.min(max))
}

/// Random bytes, with a bias to a few fill patterns.
pub fn random_bytes<R: Rng + ?Sized>(rng: &mut R, max: usize) -> Vec<u8> {
    let n = any_len(rng, max);
    match rng.gen_range(0..6) {
        0 => vec![0u8; n],
        1 => vec![0xffu8; n],
        2 => (0..n)
            .map(|_| *INTERESTING.choose(rng).expect("x"))
            .collect(),
        _ => {
            let mut v = vec![0u8; n];
            rng.fill(v.as_mut_slice());
            v
        }
    }
}

/// Bytes that mean something to protobuf, TLS and varint decoders.
pub const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x05, 0x07, 0x08, 0x0a, 0x0d, 0x10, 0x12, 0x1a, 0x22, 0x2a, 0x3f, 0x40,
    0x7f, 0x80, 0x81, 0xbf, 0xc0, 0xfe, 0xff,
];

/// A protobuf varint encoding of `v`, possibly over-long (padded with 0x80 continuation
/// bytes, still valid up to 10 bytes; invalid beyond).
pub fn varint(v: u64, overlong: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut x = v;
    loop {
        let b = (x & 0x7f) as u8;
        x >>= 7;
        if x == 0 && overlong == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
        if x == 0 {
            // pad with empty continuation groups
            for i in 0..overlong {
                out.push(if i + 1 == overlong { 0x00 } else { 0x80 });
            }
            break;
        }
    }
    out
}

/// A random protobuf field: tag with any field number and wire type, then a plausible or
/// hostile body for that wire type.
pub fn random_pb_field<R: Rng + ?Sized>(rng: &mut R, depth: u32) -> Vec<u8> {
    let field: u64 = match rng.gen_range(0..4) {
        0 => rng.gen_range(1..16),
        1 => rng.gen_range(1..32),
        2 => *[0u64, 19000, 19999, (1 << 29) - 1, 1 << 29, u64::MAX >> 3]
            .choose(rng)
            .expect("x"),
        _ => rng.gen_range(1..1 << 20),
    };
    let wire = if rng.gen_bool(0.9) {
        *[0u64, 1, 2, 5].choose(rng).expect("x")
    } else {
        rng.gen_range(0..8)
    };
    let mut out = varint((field << 3) | wire, if rng.gen_bool(0.05) { 3 } else { 0 });
    match wire {
        0 => out.extend(varint(any_u64(rng), if rng.gen_bool(0.1) { 2 } else { 0 })),
        1 => out.extend(rng.r#gen::<u64>().to_le_bytes()),
        5 => out.extend(rng.r#gen::<u32>().to_le_bytes()),
        2 => {
            let body = if depth > 0 && rng.gen_bool(0.4) {
                random_pb_message(rng, depth - 1)
            } else {
                random_bytes(rng, 64)
            };
            // length: right, off by one, or huge
            let len = match rng.gen_range(0..8) {
                0 => body.len() as u64 + 1,
                1 => (body.len() as u64).saturating_sub(1),
                2 => any_u64(rng),
                _ => body.len() as u64,
            };
            out.extend(varint(len, 0));
            out.extend(body);
        }
        3 | 4 => {} // deprecated groups: start/end markers with nothing inside
        _ => out.extend(random_bytes(rng, 8)),
    }
    out
}

/// A random sequence of protobuf fields (possibly nested).
pub fn random_pb_message<R: Rng + ?Sized>(rng: &mut R, depth: u32) -> Vec<u8> {
    let n = rng.gen_range(0..6);
    (0..n).flat_map(|_| random_pb_field(rng, depth)).collect()
}

/// Nested length-delimited field 1 `depth` levels deep (recursion limits).
pub fn deep_nesting(depth: usize, field: u64) -> Vec<u8> {
    let mut inner = Vec::new();
    for _ in 0..depth {
        let mut outer = varint((field << 3) | 2, 0);
        outer.extend(varint(inner.len() as u64, 0));
        outer.extend(inner);
        inner = outer;
    }
    inner
}

/// One random mutation of `data` in place (a libFuzzer-like menu).
pub fn mutate_once<R: Rng + ?Sized>(rng: &mut R, data: &mut Vec<u8>, max_len: usize) {
    let len = data.len();
    match rng.gen_range(0..12) {
        // flip one bit
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] ^= 1 << rng.gen_range(0..8);
        }
        // set a byte to an interesting value
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = *INTERESTING.choose(rng).expect("x");
        }
        // random byte
        2 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = rng.r#gen();
        }
        // truncate
        3 if len > 0 => {
            let n = rng.gen_range(0..len);
            data.truncate(n);
        }
        // drop a range
        4 if len > 1 => {
            let a = rng.gen_range(0..len);
            let b = rng.gen_range(a..=len.min(a + 64));
            data.drain(a..b);
        }
        // extend with random bytes
        5 => {
            let extra = random_bytes(rng, 64);
            data.extend(extra);
        }
        // insert random bytes
        6 => {
            let at = rng.gen_range(0..=len);
            let extra = random_bytes(rng, 16);
            data.splice(at..at, extra);
        }
        // duplicate a range (repeated fields, replays inside a message)
        7 if len > 0 => {
            let a = rng.gen_range(0..len);
            let b = rng.gen_range(a..=len.min(a + 128));
            let chunk = data[a..b].to_vec();
            let at = rng.gen_range(0..=data.len());
            data.splice(at..at, chunk);
        }
        // overwrite with a big-endian edge integer (TLS lengths and epochs are BE)
        8 if len >= 8 => {
            let i = rng.gen_range(0..=len - 8);
            data[i..i + 8].copy_from_slice(&any_u64(rng).to_be_bytes());
        }
        9 if len >= 4 => {
            let i = rng.gen_range(0..=len - 4);
            data[i..i + 4].copy_from_slice(&any_u32(rng).to_be_bytes());
        }
        // append a random protobuf field (unknown or repeated fields)
        10 => {
            let f = random_pb_field(rng, 2);
            data.extend(f);
        }
        // increment or decrement a byte (lengths off by one)
        11 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = if rng.r#gen() {
                data[i].wrapping_add(1)
            } else {
                data[i].wrapping_sub(1)
            };
        }
        _ => {
            let at = rng.gen_range(0..=len);
            data.insert(at, rng.r#gen());
        }
    }
    data.truncate(max_len);
}

/// `data` after 1–`max_rounds` random mutations.
pub fn mutate<R: Rng + ?Sized>(
    rng: &mut R,
    data: &[u8],
    max_rounds: usize,
    max_len: usize,
) -> Vec<u8> {
    let mut v = data.to_vec();
    let rounds = rng.gen_range(1..=max_rounds.max(1));
    for _ in 0..rounds {
        mutate_once(rng, &mut v, max_len);
    }
    v
}

/// Splices the head of `a` with the tail of `b` (crossover of two real inputs).
pub fn crossover<R: Rng + ?Sized>(rng: &mut R, a: &[u8], b: &[u8]) -> Vec<u8> {
    let i = rng.gen_range(0..=a.len());
    let j = rng.gen_range(0..=b.len());
    let mut v = a[..i].to_vec();
    v.extend_from_slice(&b[j..]);
    v
}

/// A string that is sometimes right, sometimes close, sometimes hostile.
pub fn any_string<R: Rng + ?Sized>(rng: &mut R, right: &str) -> String {
    match rng.gen_range(0..10) {
        0..=4 => right.to_string(),
        5 => String::new(),
        6 => format!("{right}x"),
        7 => right.chars().take(right.len().saturating_sub(1)).collect(),
        8 => "/".repeat(rng.gen_range(1..4)) + right + "\u{0}\u{202e}é",
        _ => (0..any_len(rng, 300))
            .map(|_| char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('?'))
            .collect(),
    }
}
