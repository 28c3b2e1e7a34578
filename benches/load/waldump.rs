//! Where a step's WAL went (`--wal-detail`): `pg_waldump` over the step's LSN range, each
//! record's bytes charged to the relation of its first block (full-page images apart), and the
//! relation names looked up in the catalog of the database they belong to.

use std::collections::HashMap;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// WAL bytes charged to one relation (or one kind of block-less record).
#[derive(Default, Clone)]
pub struct Share {
    pub records: u64,
    pub bytes: u64,
    /// Of `bytes`, what full-page images took.
    pub fpi_bytes: u64,
}

fn psql(port: u16, database: &str, sql: &str) -> Option<String> {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", database, "-Atc", sql])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8(output.stdout).ok()
}

fn lsn(position: u64) -> String {
    format!("{:X}/{:X}", position >> 32, position & 0xffff_ffff)
}

/// Parses `len (rec/tot):     79/    79` and the first `rel a/b/c` with its FPW mark.
fn parse_record(line: &str) -> Option<(String, u64, bool)> {
    let tot = line
        .split_once("len (rec/tot):")?
        .1
        .split_once(',')?
        .0
        .split_once('/')?
        .1
        .trim()
        .parse()
        .ok()?;
    let fpi = line.contains(" FPW");
    let key = match line.split_once("blkref #0: rel ") {
        Some((_, rest)) => rest.split_whitespace().next()?.to_owned(),
        None => {
            let rmgr = line.strip_prefix("rmgr: ")?.split_whitespace().next()?;
            let desc = line.split_once("desc: ")?.1.split_whitespace().next()?;
            format!("{rmgr} {desc}")
        }
    };
    Some((key, tot, fpi))
}

/// The step's WAL by relation name, largest first (`None` if `pg_waldump` could not read it,
/// e.g. a segment already recycled).
pub fn breakdown(port: u16, start: u64, end: u64) -> Option<Vec<(String, Share)>> {
    let data_dir = psql(port, "postgres", "SHOW data_directory")?;
    let output = Command::new(format!("{PG_BIN}/pg_waldump"))
        .arg("-p")
        .arg(format!("{}/pg_wal", data_dir.trim()))
        .args(["-s", &lsn(start), "-e", &lsn(end)])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut by_key: HashMap<String, Share> = HashMap::new();
    for (key, bytes, fpi) in text.lines().filter_map(parse_record) {
        let share = by_key.entry(key).or_default();
        share.records += 1;
        share.bytes += bytes;
        if fpi {
            share.fpi_bytes += bytes;
        }
    }
    if by_key.is_empty() {
        return None;
    }
    let mut named: HashMap<String, Share> = HashMap::new();
    for (key, share) in by_key {
        let name = relation_name(port, &key).unwrap_or(key);
        let total = named.entry(name).or_default();
        total.records += share.records;
        total.bytes += share.bytes;
        total.fpi_bytes += share.fpi_bytes;
    }
    let mut shares: Vec<_> = named.into_iter().collect();
    shares.sort_by_key(|(_, share)| std::cmp::Reverse(share.bytes));
    Some(shares)
}

/// `1663/16384/16397` → the relation's name in database 16384 (catalogs included).
fn relation_name(port: u16, key: &str) -> Option<String> {
    let mut parts = key.split('/');
    let (_, db, node) = (parts.next()?, parts.next()?, parts.next()?);
    let (db, node): (u32, u32) = (db.parse().ok()?, node.parse().ok()?);
    let database = match db {
        0 => "postgres".to_owned(),
        _ => psql(
            port,
            "postgres",
            &format!("SELECT datname FROM pg_database WHERE oid = {db}"),
        )?
        .trim()
        .to_owned(),
    };
    let name = psql(
        port,
        &database,
        &format!("SELECT coalesce(pg_filenode_relation(0, {node})::regclass::text, '')"),
    )?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The breakdown per applied event, for the step's JSON line.
pub fn to_json(shares: &[(String, Share)], per: u64) -> Value {
    let per = per.max(1) as f64;
    Value::Array(
        shares
            .iter()
            .map(|(name, s)| {
                json!({"relation": name, "records": s.records,
                       "bytesPerEvent": (s.bytes as f64 / per).round(),
                       "fpiBytesPerEvent": (s.fpi_bytes as f64 / per).round()})
            })
            .collect(),
    )
}

/// The largest shares on stderr.
pub fn print(label: &str, shares: &[(String, Share)], per: u64) {
    let per = per.max(1) as f64;
    let total: u64 = shares.iter().map(|(_, s)| s.bytes).sum();
    eprintln!(
        "{label}: WAL {:.0} B per applied event, by relation:",
        total as f64 / per
    );
    for (name, s) in shares.iter().take(16) {
        eprintln!(
            "  {name:<40} {:>8.0} B/event  (full pages {:>6.0} B, {} records)",
            s.bytes as f64 / per,
            s.fpi_bytes as f64 / per,
            s.records
        );
    }
}
