//! SHA-256 digests and a writer that hashes what passes through it; the BLAKE3 that
//! checks reused blob files.
//!
//! Every byte cairn publishes is hashed on its way out; `Sha256Digest` is the one
//! digest type the stages pass around (displayed as `sha256:<hex>`).

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
cpufeatures::new!(sha_extensions, "sha", "sse2", "ssse3", "sse4.1");

/// Which implementation the `sha2` and `sha1` crates run on this CPU: they pick the one
/// using the CPU's SHA instructions by exactly this test (x86 SHA-NI), else portable code.
pub fn sha_implementation() -> &'static str {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if sha_extensions::get() {
        return "SHA-NI (hardware)";
    }
    "portable (software)"
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }

    /// Lower-case hex, without the `sha256:` prefix.
    /// The SHA-256 of `value` as JSON, streamed through the hasher (a cache key over
    /// tens of thousands of files is never held as one string). For the types cairn
    /// hashes this way, structs, sequences and `BTreeMap`s but never a `HashMap`, serde
    /// writes one byte string per value: the JSON is canonical, and every field of the
    /// type is in it unless the type says `#[serde(skip)]`.
    pub fn of_json<T: serde::Serialize>(value: &T) -> Self {
        let mut out = io::BufWriter::with_capacity(1 << 16, HashingWriter::new(io::sink()));
        serde_json::to_writer(&mut out, value).expect("a cache key's inputs serialise to JSON");
        let hashing = out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .expect("writing to a sink cannot fail");
        hashing.finish().0
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a SHA-256 digest: expected 64 lower-case hex digits, optionally prefixed by `sha256:`")]
pub struct ParseDigestError(pub String);

impl FromStr for Sha256Digest {
    type Err = ParseDigestError;

    /// Accepts `<64 hex>` or `sha256:<64 hex>`, lower case only, so that a digest has
    /// exactly one spelling.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        let bad = || ParseDigestError(s.to_string());
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Wraps a writer, hashing and counting every byte written to it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The digest and length of everything written, and the inner writer.
    pub fn finish(self) -> (Sha256Digest, u64, W) {
        (
            Sha256Digest::from_hasher(self.hasher),
            self.written,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Wraps a reader, hashing and counting every byte read from it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    pub fn finish(self) -> (Sha256Digest, u64) {
        (Sha256Digest::from_hasher(self.hasher), self.read)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Hashes a whole reader, read straight into one large buffer (a file needs no
/// `BufReader`: one copy from the kernel, none between buffers).
pub fn sha256_reader(reader: impl Read) -> io::Result<(Sha256Digest, u64)> {
    let mut hasher = Sha256::new();
    let size = read_chunks(reader, |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    Ok((Sha256Digest::from_hasher(hasher), size))
}

/// Passes every byte of `reader` to `take`, a megabyte at a time, and returns how
/// many there were; stops at the first error of either.
pub fn read_chunks(
    mut reader: impl Read,
    mut take: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0;
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(size),
            Ok(n) => {
                take(&buffer[..n])?;
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The BLAKE3 of a blob file's bytes. cairn records it beside the blob's SHA-256 when
/// it stores a blob it wrote (and hashed) in the layer cache, and checks a blob file
/// it reuses against it: every byte is checked, as hashing with SHA-256 again would,
/// at several times the speed (a 160 MB layer: about 60 ms against 130 ms with SHA-NI
/// on one core here). Displayed as `blake3:<hex>`; never part of an image.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Blake3Digest([u8; 32]);

impl Blake3Digest {
    pub fn from_hasher(hasher: &blake3::Hasher) -> Self {
        Self(*hasher.finalize().as_bytes())
    }

    /// The BLAKE3 and size of everything `reader` yields.
    pub fn of_reader(reader: impl Read) -> io::Result<(Self, u64)> {
        let mut hasher = blake3::Hasher::new();
        let size = read_chunks(reader, |chunk| {
            hasher.update(chunk);
            Ok(())
        })?;
        Ok((Self::from_hasher(&hasher), size))
    }
}

impl fmt::Display for Blake3Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Blake3Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Blake3Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Blake3Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        s.strip_prefix("blake3:")
            .filter(|hex| !hex.bytes().any(|b| b.is_ascii_uppercase()))
            .and_then(|hex| hex::decode_to_slice(hex, &mut out).ok())
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a BLAKE3 digest")))?;
        Ok(Self(out))
    }
}

/// SHA-1 of the base image's regular files, keyed by their SHA-256: SPDX requires
/// SHA-1 per file, and computing it in the same pass that reads a base layer means
/// every file is read once. A list sorted by SHA-256, searched by bisection. (Layers
/// cairn writes keep theirs by entry, [`crate::layers::EntrySha1s`].)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sha1Index {
    /// Sorted by SHA-256, one pair per content.
    pairs: Vec<(Sha256Digest, [u8; 20])>,
}

impl Sha1Index {
    pub fn new() -> Self {
        Sha1Index::default()
    }

    /// The SHA-1 of the content whose SHA-256 is `sha256`.
    pub fn get(&self, sha256: &Sha256Digest) -> Option<&[u8; 20]> {
        let at = self.pairs.binary_search_by(|(k, _)| k.cmp(sha256)).ok()?;
        Some(&self.pairs[at].1)
    }

    pub fn contains_key(&self, sha256: &Sha256Digest) -> bool {
        self.get(sha256).is_some()
    }

    /// The pairs, by SHA-256.
    pub fn iter(&self) -> impl Iterator<Item = &(Sha256Digest, [u8; 20])> {
        self.pairs.iter()
    }
}

/// Pairs in any order, with repeats (the same content in several files).
impl From<Vec<(Sha256Digest, [u8; 20])>> for Sha1Index {
    fn from(mut pairs: Vec<(Sha256Digest, [u8; 20])>) -> Self {
        pairs.sort_unstable_by_key(|(sha256, _)| *sha256);
        pairs.dedup_by_key(|(sha256, _)| *sha256);
        Sha1Index { pairs }
    }
}

impl FromIterator<(Sha256Digest, [u8; 20])> for Sha1Index {
    fn from_iter<I: IntoIterator<Item = (Sha256Digest, [u8; 20])>>(pairs: I) -> Self {
        Sha1Index::from(pairs.into_iter().collect::<Vec<_>>())
    }
}

impl Extend<(Sha256Digest, [u8; 20])> for Sha1Index {
    fn extend<I: IntoIterator<Item = (Sha256Digest, [u8; 20])>>(&mut self, pairs: I) {
        self.pairs.extend(pairs);
        // Usually two sorted runs, which the stable sort merges in one pass.
        self.pairs.sort_by_key(|(sha256, _)| *sha256);
        self.pairs.dedup_by_key(|(sha256, _)| *sha256);
    }
}

impl IntoIterator for Sha1Index {
    type Item = (Sha256Digest, [u8; 20]);
    type IntoIter = std::vec::IntoIter<(Sha256Digest, [u8; 20])>;

    fn into_iter(self) -> Self::IntoIter {
        self.pairs.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blake3_digest_is_the_standard_one_and_reads_back_only_in_its_one_spelling() {
        // BLAKE3 of the empty input and of "abc", as the reference implementation gives.
        let empty = Blake3Digest::of_reader(&b""[..]).unwrap();
        assert_eq!(
            empty.0.to_string(),
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let (abc, size) = Blake3Digest::of_reader(&b"abc"[..]).unwrap();
        assert_eq!(size, 3);
        let json = serde_json::to_string(&abc).unwrap();
        assert_eq!(
            json,
            "\"blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85\""
        );
        assert_eq!(serde_json::from_str::<Blake3Digest>(&json).unwrap(), abc);
        for bad in [
            "\"6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85\"",
            "\"blake3:6437B3AC38465133FFB63B75273A8DB548C558465D79DB03FD359C6CD5BD9D85\"",
            "\"blake3:6437\"",
        ] {
            assert!(serde_json::from_str::<Blake3Digest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sha1_index_finds_every_content_added_in_any_order() {
        let pair = |bytes: &[u8]| (Sha256Digest::of(bytes), [bytes.len() as u8; 20]);
        // Unsorted, with a content written twice (two files with the same bytes).
        let mut index = Sha1Index::from(vec![pair(b"bb"), pair(b"a"), pair(b"bb")]);
        index.extend([pair(b"dddd"), pair(b"ccc")]);
        let base = index;
        for bytes in [&b"a"[..], b"bb", b"ccc", b"dddd"] {
            assert_eq!(
                base.get(&Sha256Digest::of(bytes)),
                Some(&[bytes.len() as u8; 20])
            );
        }
        assert_eq!(base.iter().count(), 4);
        assert!(!base.contains_key(&Sha256Digest::of(b"e")));
    }

    #[test]
    fn empty_input_has_the_well_known_digest() {
        assert_eq!(
            Sha256Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parses_both_spellings_and_rejects_others() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let a: Sha256Digest = hex.parse().unwrap();
        let b: Sha256Digest = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(a, b);
        assert!(hex.to_uppercase().parse::<Sha256Digest>().is_err());
        assert!("sha256:abc".parse::<Sha256Digest>().is_err());
        assert!(format!("sha512:{hex}").parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn hashing_writer_matches_one_shot_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (digest, len, inner) = w.finish();
        assert_eq!(digest, Sha256Digest::of(b"hello world"));
        assert_eq!(len, 11);
        assert_eq!(inner, b"hello world");
    }
}
