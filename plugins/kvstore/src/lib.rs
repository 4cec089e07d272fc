//! `kvstore`: a small key-value server, the example of a Steward network service.
//!
//! Runs in: the supervisor (init: registers the handler, requests its region and lock) and one
//! client child per connection (the handler, `serve`), plus a dead-end child for each client
//! the host turns away (the rejection writer, `refuse`).
//!
//! The protocol is one line per request and one line per answer:
//!
//! | request | answer |
//! |---|---|
//! | `GET key` | `VALUE value`, or `NOT_FOUND` |
//! | `SET key value` | `OK`, or `ERROR ...` (too long, table full) |
//! | `DEL key` | `DELETED`, or `NOT_FOUND` |
//! | `QUIT` | `BYE`, then the server closes |
//!
//! Keys are one word of at most [`KEY_LEN`] bytes; a value is the rest of the line, at most
//! [`VALUE_LEN`] bytes. The table lives in the shared region `table` as [`SLOTS`] fixed-size
//! entries, so every connection's child sees every other's writes: `SET` and `DEL` hold the lock
//! `table` exclusively, `GET` shared. The region is zeroed with each new segment: a crash reset
//! empties the store, as it resets every other piece of shared state.
//!
//! Invariant: an entry's bytes change only under the exclusive lock; `used` is set after the
//! key and value are written and cleared before they are reused, so a reader under the shared
//! lock never sees half an entry.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use steward::{entry, Admission, Connection, ConnectionHandler, InitError, Registrar, Rejection, WorkerError};

steward::plugin! { name: "kvstore", init: init }

/// Longest key, in bytes.
pub const KEY_LEN: usize = 32;
/// Longest value, in bytes.
pub const VALUE_LEN: usize = 96;
/// How many entries the table holds.
pub const SLOTS: usize = 1024;
/// Longest request line read; a longer one ends the connection.
const MAX_LINE: usize = 256;

steward::shareable! {
    /// One entry of the table.
    #[repr(C)]
    pub struct Entry {
        pub used: AtomicU32,
        pub key_len: AtomicU32,
        pub value_len: AtomicU32,
        pub key: [AtomicU8; KEY_LEN],
        pub value: [AtomicU8; VALUE_LEN],
    }
}

fn init(reg: &mut Registrar<'_>) -> Result<(), InitError> {
    reg.request_region("table", (SLOTS * std::mem::size_of::<Entry>()) as u64)?;
    reg.request_lock("table")?;
    reg.register_handler(ConnectionHandler::new("kv", entry!(serve)).rejection(entry!(refuse)))?;
    Ok(())
}

steward::connection_entry!(serve);
steward::rejection_entry!(refuse);

/// Serves one client until it says `QUIT`, closes, or the host asks the connection to end.
fn serve(c: &mut Connection) -> Result<(), WorkerError> {
    let table = c
        .region("table")
        .and_then(|r| r.slice::<Entry>())
        .map_err(|e| WorkerError::fatal(e.to_string()))?;
    let lock = c.lock("table").map_err(|e| WorkerError::fatal(e.to_string()))?;
    let mut pending = Vec::with_capacity(MAX_LINE);
    loop {
        let Some(line) = next_line(c, &mut pending)? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (cmd, rest) = text.split_once(' ').unwrap_or((text, ""));
        let answer = match cmd {
            "GET" => {
                let _g = lock.shared();
                match find(table, rest.as_bytes()) {
                    Some(e) => format!("VALUE {}", String::from_utf8_lossy(&read(&e.value, &e.value_len))),
                    None => "NOT_FOUND".to_owned(),
                }
            }
            "SET" => match rest.split_once(' ') {
                Some((k, v)) if valid_key(k) && v.len() <= VALUE_LEN => {
                    let _g = lock.exclusive();
                    set(table, k.as_bytes(), v.as_bytes())
                }
                _ => format!(
                    "ERROR usage: SET key value (a key of 1 to {KEY_LEN} bytes, a value of at most {VALUE_LEN})"
                ),
            },
            "DEL" => {
                let _g = lock.exclusive();
                match find(table, rest.as_bytes()) {
                    Some(e) => {
                        e.used.store(0, Ordering::Release);
                        "DELETED".to_owned()
                    }
                    None => "NOT_FOUND".to_owned(),
                }
            }
            "QUIT" => {
                let _ = c.write_all(b"BYE\n");
                return Ok(());
            }
            _ => "ERROR unknown command (GET, SET, DEL, QUIT)".to_owned(),
        };
        if c.write_all(format!("{answer}\n").as_bytes()).is_err() {
            return Ok(());
        }
    }
}

/// The next request line (without its newline) from `c`, keeping what follows it in
/// `pending`: a client may send several requests at once. `None` when the client closed or the
/// host asked the connection to end; a line longer than [`MAX_LINE`] ends the connection.
fn next_line(c: &mut Connection, pending: &mut Vec<u8>) -> Result<Option<Vec<u8>>, WorkerError> {
    loop {
        if let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line = pending[..pos].to_vec();
            pending.drain(..=pos);
            return Ok(Some(line));
        }
        if pending.len() > MAX_LINE {
            let _ = c.write_all(b"ERROR line too long\n");
            return Ok(None);
        }
        let mut buf = [0u8; 512];
        match c.read(&mut buf) {
            // The client closed, or the host asked this connection to end (fast shutdown).
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

/// Answers a client the host turns away, in this protocol's words.
fn refuse(r: &mut Rejection) {
    let why = match r.admission() {
        Admission::TooMany => "ERROR too many clients, try again later",
        Admission::Starting => "ERROR the store is starting up",
        Admission::ShuttingDown => "ERROR the store is shutting down",
        Admission::Recovering => "ERROR the store is recovering from a crash",
        Admission::Ok => return,
    };
    let _ = r.write_all(format!("{why}\n").as_bytes());
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= KEY_LEN && !k.contains(' ')
}

fn read<const N: usize>(bytes: &[AtomicU8; N], len: &AtomicU32) -> Vec<u8> {
    let n = (len.load(Ordering::Relaxed) as usize).min(N);
    bytes[..n].iter().map(|b| b.load(Ordering::Relaxed)).collect()
}

fn write<const N: usize>(bytes: &[AtomicU8; N], len: &AtomicU32, v: &[u8]) {
    for (b, x) in bytes.iter().zip(v) {
        b.store(*x, Ordering::Relaxed);
    }
    len.store(v.len() as u32, Ordering::Relaxed);
}

/// The entry holding `key`; the caller holds the lock, shared or exclusive.
fn find<'a>(table: &'a [Entry], key: &[u8]) -> Option<&'a Entry> {
    table
        .iter()
        .find(|e| e.used.load(Ordering::Acquire) != 0 && read(&e.key, &e.key_len) == key)
}

/// Stores `key = value`; the caller holds the lock exclusively.
fn set(table: &[Entry], key: &[u8], value: &[u8]) -> String {
    if let Some(e) = find(table, key) {
        write(&e.value, &e.value_len, value);
        return "OK".to_owned();
    }
    let Some(e) = table.iter().find(|e| e.used.load(Ordering::Acquire) == 0) else {
        return format!("ERROR the table is full ({SLOTS} keys)");
    };
    write(&e.key, &e.key_len, key);
    write(&e.value, &e.value_len, value);
    e.used.store(1, Ordering::Release);
    "OK".to_owned()
}
