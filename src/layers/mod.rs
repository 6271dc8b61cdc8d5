//! Stage 3: layers. Assembles each layer's file tree and writes it as a
//! deterministic, compressed tar blob.

pub mod gzip;
