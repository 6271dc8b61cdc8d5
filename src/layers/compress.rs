//! The layer compressors behind one writer: deterministic parallel gzip ([`super::gzip`]),
//! zstd, or none. Each gives bytes that depend only on the input, never on the thread
//! count, so `--jobs` never changes an image.
//!
//! zstd runs in libzstd's multi-threaded mode with at least one worker, always: libzstd
//! cuts the input into jobs whose size depends on the level and window, not on the worker
//! count, so 1, 2 or 4 workers give the same bytes, while the single-threaded mode
//! (`workers = 0`) gives different ones. The pledged source size is never set (it changes
//! the frame header and the parameters libzstd picks), nor the content checksum (the
//! blob's SHA-256 already covers every byte).

use crate::oci::compression::Compression;
use std::io::{self, Write};

use super::gzip::ParallelGzipWriter;

/// The libdeflate level of gzip layers: part of the output format.
pub const GZIP_LEVEL: u32 = 6;
/// The size of each multi-threaded zstd job: part of the output format.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// The zstd level of zstd layers: part of the output format.
pub const ZSTD_LEVEL: i32 = 3;
/// At most this many zstd workers, whatever `--jobs` says: each holds about 4 MiB
/// (its job's input and output and a compression context), and beyond about four the
/// one thread that reads, hashes (SHA-256 twice, SHA-1) and tars the files is the
/// limit. The bytes do not depend on the count.
const ZSTD_MAX_WORKERS: usize = 4;

/// A writer that compresses what it is given into `W`.
pub enum LayerEncoder<W: Write> {
    Gzip(ParallelGzipWriter<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write> LayerEncoder<W> {
    /// Compresses into `inner` on `jobs` threads (0 is taken as 1).
    pub fn new(inner: W, compression: Compression, jobs: usize) -> io::Result<Self> {
        let jobs = jobs.max(1);
        Ok(match compression {
            Compression::Gzip => {
                LayerEncoder::Gzip(ParallelGzipWriter::new(inner, GZIP_LEVEL, jobs))
            }
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(inner, ZSTD_LEVEL)?;
                let workers = jobs.min(ZSTD_MAX_WORKERS) as u32;
                encoder.multithread(workers)?;
                // libzstd's default job for level 3 is 8 MiB, and it keeps several jobs'
                // input and output buffered per worker: 60 MiB and more. A fixed 2 MiB
                // job keeps the encoder near 16 MiB; it is part of the output format
                // (the job size shapes the frame), like the level.
                encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                LayerEncoder::Zstd(encoder)
            }
            Compression::None => LayerEncoder::None(inner),
        })
    }

    /// Ends the stream and returns the inner writer, flushed.
    pub fn finish(self) -> io::Result<W> {
        match self {
            LayerEncoder::Gzip(gzip) => gzip.finish(),
            LayerEncoder::Zstd(zstd) => {
                let mut inner = zstd.finish()?;
                inner.flush()?;
                Ok(inner)
            }
            LayerEncoder::None(mut inner) => {
                inner.flush()?;
                Ok(inner)
            }
        }
    }
}

impl<W: Write> Write for LayerEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LayerEncoder::Gzip(w) => w.write(buf),
            LayerEncoder::Zstd(w) => w.write(buf),
            LayerEncoder::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LayerEncoder::Gzip(w) => w.flush(),
            LayerEncoder::Zstd(w) => w.flush(),
            LayerEncoder::None(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256Digest;
    use std::io::Read;

    /// Eight MiB of text-like and random stretches: several zstd jobs at level 3, and
    /// many gzip chunks.
    fn layer_like_bytes() -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let words: [&[u8]; 8] = [
            b"usr ", b"lib ", b"share ", b"doc\n", b"the ", b"layer ", b"0644 ", b"root ",
        ];
        let mut data = Vec::with_capacity(8 << 20);
        while data.len() < 8 << 20 {
            if next() % 4 == 0 {
                for _ in 0..4096 {
                    data.push(next() as u8);
                }
            } else {
                for _ in 0..2048 {
                    data.extend_from_slice(words[(next() % 8) as usize]);
                }
            }
        }
        data
    }

    fn encode(data: &[u8], compression: Compression, jobs: usize) -> Vec<u8> {
        let mut encoder = LayerEncoder::new(Vec::new(), compression, jobs).unwrap();
        // Odd-sized writes: the bytes must not depend on how the tar writer splits them.
        for piece in data.chunks(100_003) {
            encoder.write_all(piece).unwrap();
        }
        encoder.finish().unwrap()
    }

    #[test]
    fn zstd_bytes_do_not_depend_on_jobs_and_round_trip() {
        let data = layer_like_bytes();
        let one = encode(&data, Compression::Zstd, 1);
        for jobs in [2, 4] {
            let other = encode(&data, Compression::Zstd, jobs);
            assert_eq!(
                Sha256Digest::of(&other),
                Sha256Digest::of(&one),
                "zstd with {jobs} jobs differs from 1 job"
            );
        }
        let mut decoded = Vec::new();
        zstd::stream::read::Decoder::new(&one[..])
            .unwrap()
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded == data, "zstd layer does not round-trip");
        assert!(one.len() < data.len() * 3 / 4, "zstd did not compress");
    }

    #[test]
    fn gzip_and_none_bytes_do_not_depend_on_jobs() {
        let data = layer_like_bytes();
        let gzip = encode(&data, Compression::Gzip, 1);
        assert_eq!(gzip, encode(&data, Compression::Gzip, 4));
        assert!(encode(&data, Compression::None, 2) == data);
        // Eight gzip members: cairn's own reader of gzip layers must read past the first.
        let mut decoded = Vec::new();
        Compression::Gzip
            .decompressing(&gzip[..])
            .unwrap()
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(
            decoded == data,
            "a multi-member gzip layer does not round-trip"
        );
    }

    #[test]
    fn zstd_output_is_accepted_by_the_zstd_tool() {
        let data = layer_like_bytes();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.tar.zst");
        std::fs::write(&path, encode(&data, Compression::Zstd, 2)).unwrap();
        let out = std::process::Command::new("zstd")
            .args(["-d", "-c", "-q"])
            .arg(&path)
            .output()
            .expect("zstd is a test tool (xtask TEST_TOOLS)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == data, "zstd -d changed the layer bytes");
    }
}
