//! Inputs for the targets' tests, from a seed: files of the seed corpus with
//! a few blind mutations each (truncate, flip a bit, overwrite bytes with
//! boundary values, insert, delete, duplicate, splice with another file,
//! append), and now and then raw random bytes.
//!
//! The same seed and corpus give the same inputs in the same order, so a
//! failing input is replayed by its seed. Nothing here looks at coverage:
//! it is a cheap neighbourhood search around the seeds, not a fuzzer. The
//! randomness is the core's seeded SplitMix64 ([`dike_core::rng::Rng`]).

use dike_core::rng::Rng;

/// Bytes an input never grows beyond, so one input stays cheap.
pub const MAX_INPUT: usize = 16 * 1024;

/// A number in `0..n` (0 if `n` is 0).
fn below(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

/// `n` random bytes.
pub fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// Single bytes worth trying: boundaries, and MessagePack markers that
/// announce a type or a length (nil, bool, bin/str/array/map headers of
/// every width, fixarray/fixmap limits, negative fixint).
const INTERESTING_BYTES: [u8; 24] = [
    0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xcf,
    0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff,
];

/// Little- and big-endian lengths worth trying in a length field.
const INTERESTING_WORDS: [u32; 8] = [
    0,
    1,
    0x7f,
    0xffff,
    0x0001_0000,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX,
];

/// Text fragments for the JSON target (and harmless elsewhere).
const TOKENS: [&[u8]; 14] = [
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e309",
    b"18446744073709551616",
    b"\\u0000",
    b"\"\xc3\xa9\"",
];

/// Inputs mutated from a corpus, from a seed.
#[derive(Debug)]
pub struct Mutator<'a> {
    rng: Rng,
    corpus: &'a [Vec<u8>],
}

impl<'a> Mutator<'a> {
    /// Inputs derived from `corpus` (raw random bytes only if it is empty),
    /// fixed by `seed`.
    pub fn new(seed: u64, corpus: &'a [Vec<u8>]) -> Self {
        Self {
            rng: Rng::new(seed),
            corpus,
        }
    }

    /// The next input: one time in eight (always, with no corpus) up to 256
    /// raw random bytes; otherwise a corpus file with one to four mutations.
    pub fn next_input(&mut self) -> Vec<u8> {
        if self.corpus.is_empty() || below(&mut self.rng, 8) == 0 {
            let n = below(&mut self.rng, 257);
            return random_bytes(&mut self.rng, n);
        }
        let mut input = self.corpus[below(&mut self.rng, self.corpus.len())].clone();
        for _ in 0..=below(&mut self.rng, 4) {
            self.mutate(&mut input);
        }
        input.truncate(MAX_INPUT);
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        let rng = &mut self.rng;
        let len = input.len();
        match below(rng, 10) {
            0 => input.truncate(below(rng, len + 1)),
            1 if len > 0 => input[below(rng, len)] ^= 1 << below(rng, 8),
            2 if len > 0 => {
                input[below(rng, len)] = INTERESTING_BYTES[below(rng, INTERESTING_BYTES.len())]
            }
            3 if len > 0 => {
                let word = INTERESTING_WORDS[below(rng, INTERESTING_WORDS.len())];
                let bytes = if below(rng, 2) == 0 {
                    word.to_le_bytes()
                } else {
                    word.to_be_bytes()
                };
                let at = below(rng, len);
                let n = bytes.len().min(len - at);
                input[at..at + n].copy_from_slice(&bytes[..n]);
            }
            4 => {
                let n = 1 + below(rng, 16);
                let bytes = random_bytes(rng, n);
                let at = below(rng, len + 1);
                input.splice(at..at, bytes);
            }
            5 if len > 0 => {
                let at = below(rng, len);
                let n = 1 + below(rng, len - at);
                input.drain(at..at + n);
            }
            6 if len > 0 => {
                let at = below(rng, len);
                let n = 1 + below(rng, (len - at).min(64));
                let chunk = input[at..at + n].to_vec();
                let to = below(rng, len + 1);
                input.splice(to..to, chunk);
            }
            7 if !self.corpus.is_empty() => {
                let other = &self.corpus[below(rng, self.corpus.len())];
                let keep = below(rng, len + 1);
                let from = below(rng, other.len() + 1);
                input.truncate(keep);
                input.extend_from_slice(&other[from..]);
            }
            8 => {
                let token = TOKENS[below(rng, TOKENS.len())];
                let at = below(rng, len + 1);
                input.splice(at..at, token.iter().copied());
            }
            _ => {
                let n = below(rng, 33);
                input.extend(random_bytes(rng, n));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let corpus = vec![b"hello".to_vec(), vec![0x92, 0x01, 0x02]];
        let a: Vec<_> = {
            let mut m = Mutator::new(42, &corpus);
            (0..100).map(|_| m.next_input()).collect()
        };
        let mut m = Mutator::new(42, &corpus);
        let b: Vec<_> = (0..100).map(|_| m.next_input()).collect();
        assert_eq!(a, b);
        let mut m = Mutator::new(43, &corpus);
        let c: Vec<_> = (0..100).map(|_| m.next_input()).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn inputs_stay_within_the_bound_and_differ_from_the_seeds() {
        let corpus = vec![vec![7u8; MAX_INPUT]];
        let mut m = Mutator::new(1, &corpus);
        let inputs: Vec<_> = (0..200).map(|_| m.next_input()).collect();
        assert!(inputs.iter().all(|i| i.len() <= MAX_INPUT));
        assert!(inputs.iter().filter(|i| **i != corpus[0]).count() > 150);
    }

    #[test]
    fn random_bytes_are_as_many_as_asked() {
        let mut rng = Rng::new(0);
        assert!(random_bytes(&mut rng, 0).is_empty());
        assert_eq!(random_bytes(&mut rng, 300).len(), 300);
    }
}
