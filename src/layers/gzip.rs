//! Deterministic parallel gzip.

use std::io::{self, Write};

/// A gzip writer that compresses fixed-size chunks of its input on several threads.
/// The output bytes depend only on the input bytes and the level, never on `threads`.
pub struct ParallelGzipWriter<W: Write> {
    inner: W,
}

impl<W: Write> ParallelGzipWriter<W> {
    pub fn new(inner: W, level: u32, threads: usize) -> Self {
        let _ = (level, threads);
        todo!("helper G")
    }

    /// Flushes the last chunk and the gzip trailer, returning the inner writer.
    pub fn finish(self) -> io::Result<W> {
        todo!("helper G")
    }
}

impl<W: Write> Write for ParallelGzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = (&self.inner, buf);
        todo!("helper G")
    }

    fn flush(&mut self) -> io::Result<()> {
        todo!("helper G")
    }
}
