//! The decode benchmark's Rust half: the same frames (one per line of the file given) parsed
//! only, into the typed element structs with no Arrow, which is the floor, and then decoded
//! fully into Arrow batches. Prints one JSON line of nanoseconds per frame (best of 5 runs, so
//! a noisy neighbour inflates neither).

use std::hint::black_box;
use std::time::Instant;

use ingestor_core::flat;
use ingestor_core::position::PositionElement;
use ingestor_core::protocol::Envelope;
use ingestor_core::wallet::WalletElement;
use ingestor_core::{Decoder, Table};

/// As in the extension (`rust/py/src/lib.rs`), so both halves of the benchmark allocate alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 5;
const BATCH: usize = 10_000;

/// The parse the decoder does, without Arrow: pushes of the common shape through the flat
/// fast path, everything else through serde.
fn parse_only(frames: &[&[u8]]) -> usize {
    let mut elements = 0;
    let mut scratch = flat::Parsed::default();
    let mut orders = flat::KeyOrders::default();
    for frame in frames {
        let text = std::str::from_utf8(frame).expect("bench frames are UTF-8");
        let mut parsed = std::mem::take(&mut scratch).recycle();
        if flat::push_frame(text, &mut parsed, &mut orders).is_some() {
            elements += parsed
                .positions
                .iter()
                .map(|(_, p)| black_box(p.size.0.is_some() as usize))
                .sum::<usize>();
            elements += parsed
                .wallets
                .iter()
                .map(|(_, w)| black_box(w.coin.len()))
                .sum::<usize>();
            scratch = parsed.recycle();
            continue;
        }
        scratch = parsed.recycle();
        elements += serde_parse(text);
    }
    elements
}

/// The serde path alone (the reference reader, and the only one before the fast path).
fn serde_parse_only(frames: &[&[u8]]) -> usize {
    frames
        .iter()
        .map(|frame| serde_parse(std::str::from_utf8(frame).expect("bench frames are UTF-8")))
        .sum()
}

fn serde_parse(text: &str) -> usize {
    let mut elements = 0;
    let envelope: Envelope = serde_json::from_str(text).expect("bench frames are valid");
    let topic = envelope.topic.as_deref().unwrap_or_default();
    for raw in envelope.data.iter().flatten() {
        if topic == "wallet" {
            let w: WalletElement = serde_json::from_str(raw.get()).unwrap();
            elements += black_box(w.coin.len());
        } else {
            let p: PositionElement = serde_json::from_str(raw.get()).unwrap();
            elements += black_box(p.size.0.is_some() as usize);
        }
    }
    elements
}

fn decode(frames: &[&[u8]]) -> usize {
    let mut decoder = Decoder::default();
    let mut rows = 0;
    for chunk in frames.chunks(BATCH) {
        for frame in chunk {
            decoder.decode_frame("acct-0001", frame, 1_700_000_000_000_000);
        }
        for table in Table::ALL {
            rows += black_box(decoder.cut(table)).num_rows();
        }
    }
    rows
}

fn best_ns_per_frame(frames: &[&[u8]], f: fn(&[&[u8]]) -> usize) -> f64 {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(f(frames));
            start.elapsed().as_nanos() as f64 / frames.len() as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: decode_floor FRAMES.ndjson");
    let text = std::fs::read(&path).expect("readable frames file");
    // Slices of one buffer: frames back to back, as a socket reader leaves them (and as the
    // Python half lays them out), whatever the allocator does with small vectors.
    let frames: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    // `decode_floor FRAMES decode` (or `parse`) runs only that half, for profiling.
    match std::env::args().nth(2).as_deref() {
        Some("decode") => return println!("{}", best_ns_per_frame(&frames, decode)),
        Some("parse") => return println!("{}", best_ns_per_frame(&frames, parse_only)),
        Some("serde") => return println!("{}", best_ns_per_frame(&frames, serde_parse_only)),
        _ => {}
    }
    let parse = best_ns_per_frame(&frames, parse_only);
    let full = best_ns_per_frame(&frames, decode);
    let serde = best_ns_per_frame(&frames, serde_parse_only);
    println!(
        "{{\"frames\": {}, \"parse_only_ns\": {parse:.1}, \"decode_ns\": {full:.1}, \"serde_parse_only_ns\": {serde:.1}}}",
        frames.len()
    );
}
