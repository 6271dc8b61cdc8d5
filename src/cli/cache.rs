//! `cairn cache info` and `cairn cache prune`, and where the cache lives: `--cache-dir`,
//! else `$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`.

use crate::{print_json, wall_clock};
use anyhow::{anyhow, bail, Context, Result};
use cairn::layers::cache::{LayerCache, PrunePolicy};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Show where the cache is and how much it holds.
    Info {
        #[command(flatten)]
        dir: CacheDirArg,
        #[arg(long)]
        json: bool,
    },
    /// Remove cached layers: those unused for longer than --older-than, then the least
    /// recently used until the cache fits in --max-size. Without either, removes only
    /// unreferenced blobs and leftovers of interrupted builds.
    Prune {
        #[command(flatten)]
        dir: CacheDirArg,
        /// Largest total size of the cached blobs, e.g. 500M, 10G, 1048576 (bytes).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
        /// Remove layers not used for this long, e.g. 30d, 12h, 90m, 3600s.
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct CacheDirArg {
    /// The cache directory (default: $XDG_CACHE_HOME/cairn, else ~/.cache/cairn).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl CacheDirArg {
    /// The directory given, else the user's cache directory.
    pub fn resolve(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.cache_dir {
            return Ok(dir.clone());
        }
        match std::env::var_os("XDG_CACHE_HOME") {
            Some(dir) if !dir.is_empty() => return Ok(PathBuf::from(dir).join("cairn")),
            _ => {}
        }
        match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".cache/cairn")),
            _ => bail!(
                "no cache directory: neither XDG_CACHE_HOME nor HOME is set; pass --cache-dir DIR or --no-cache"
            ),
        }
    }

    pub fn open(&self) -> Result<LayerCache> {
        let dir = self.resolve()?;
        LayerCache::open(&dir).with_context(|| {
            format!(
                "opening the layer cache in {} (pass --cache-dir DIR or --no-cache)",
                dir.display()
            )
        })
    }
}

pub fn run(args: CacheArgs) -> Result<i32> {
    match args.command {
        CacheCommand::Info { dir, json } => {
            let info = dir.open()?.info()?;
            if json {
                return print_json(&info);
            }
            println!("cache: {}", info.dir.display());
            println!(
                "{} layer entries, {} image records, {} VM disk records; {} blobs, {}",
                info.entries,
                info.images,
                info.disks,
                info.blobs,
                human_size(info.bytes)
            );
        }
        CacheCommand::Prune {
            dir,
            max_size,
            older_than,
            json,
        } => {
            let now = wall_clock();
            let policy = PrunePolicy {
                max_bytes: max_size,
                unused_since: older_than.map(|age| now.saturating_sub(age)),
            };
            let report = dir.open()?.prune(policy, now)?;
            if json {
                return print_json(&report);
            }
            println!(
                "removed {} entries and {} blobs ({}); {} blobs ({}) left in {}",
                report.removed_entries,
                report.removed_blobs,
                human_size(report.freed_bytes),
                report.after.blobs,
                human_size(report.after.bytes),
                report.after.dir.display()
            );
        }
    }
    Ok(0)
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// `123`, `500K`, `500M`, `10G`, `1T` (powers of 1024; an optional trailing `B` or `iB`).
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (number, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => bail!("unknown size unit in `{s}`: use K, M, G or T"),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = number
        .trim()
        .parse()
        .map_err(|_| anyhow!("`{s}` is not a size: write e.g. 500M or 10G"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| anyhow!("`{s}` is too large"))
}

/// `3600s`, `90m`, `12h`, `30d`, `2w` (a bare number is seconds), as seconds.
fn parse_age(s: &str) -> Result<u64> {
    let t = s.trim();
    let (number, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => bail!("unknown unit in `{s}`: use s, m, h, d or w"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow!("`{s}` is not an age: write e.g. 30d or 12h"))?;
    n.checked_mul(factor)
        .ok_or_else(|| anyhow!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_parse_with_units_and_reject_nonsense() {
        assert_eq!(parse_size("1048576").ok(), Some(1 << 20));
        assert_eq!(parse_size("500M").ok(), Some(500 << 20));
        assert_eq!(parse_size("10GiB").ok(), Some(10 << 30));
        assert_eq!(parse_size("2k").ok(), Some(2048));
        assert!(parse_size("10X").is_err() && parse_size("M").is_err());
        assert_eq!(parse_age("90m").ok(), Some(5400));
        assert_eq!(parse_age("30d").ok(), Some(30 * 86_400));
        assert_eq!(parse_age("15").ok(), Some(15));
        assert!(parse_age("3y").is_err() && parse_age("d").is_err());
    }
}
