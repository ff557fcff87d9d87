//! The record codec on its own: nanoseconds per record to encode, to check the checksum, to
//! decode, and the chain hash, beside plain postcard of the same event as the baseline.

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result};
use covenant_domain::view_decoder::ViewDecoder;
use covenant_domain::views::RecordedEventView;
use covenant_domain::{Position, RecordedEvent};
use covenant_log::codec::{self, GENESIS_HASH};

use crate::workload::Workload;

/// Median nanoseconds per call of `work` over `runs` runs of `iterations` calls.
fn nanos_per_call(runs: usize, iterations: u32, mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..iterations {
            work()?;
        }
        samples.push(started.elapsed().as_nanos() as f64 / f64::from(iterations));
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// Prints the codec table for records of about `event_bytes` bytes.
pub(crate) fn run(event_bytes: usize, runs: usize) -> Result<()> {
    let workload = Workload::sized(event_bytes)?;
    let position = Position { partition: 3, offset: 123_456 };
    let event: RecordedEvent =
        codec::decode_record(position, &workload.record).context("decode the sample")?;
    let body = postcard::to_stdvec(&event).context("encode the sample")?;
    let iterations = 200_000;
    let runs = runs.max(3);
    let rows = [
        (
            "postcard encode (baseline)",
            nanos_per_call(runs, iterations, || {
                black_box(postcard::to_stdvec(black_box(&event))?);
                Ok(())
            })?,
        ),
        (
            "postcard decode (baseline)",
            nanos_per_call(runs, iterations, || {
                black_box(postcard::from_bytes::<RecordedEvent>(black_box(&body))?);
                Ok(())
            })?,
        ),
        (
            "record encode (postcard + checksum + blake3 chain hash)",
            nanos_per_call(runs, iterations, || {
                black_box(codec::encode_record(&GENESIS_HASH, black_box(&event))?);
                Ok(())
            })?,
        ),
        (
            "record checksum check (`split_record`)",
            nanos_per_call(runs, iterations, || {
                black_box(codec::split_record(position, black_box(&workload.record))?);
                Ok(())
            })?,
        ),
        (
            "record decode, owned (checksum + `ViewDecoder` + position check + `to_owned`)",
            nanos_per_call(runs, iterations, || {
                black_box(codec::decode_record(position, black_box(&workload.record))?);
                Ok(())
            })?,
        ),
        (
            "record decode into a borrowed view (checksum + `ViewDecoder` + position check)",
            nanos_per_call(runs, iterations, || {
                black_box(codec::decode_view(position, black_box(&workload.record))?);
                Ok(())
            })?,
        ),
        (
            "event into a borrowed view through serde (`postcard::from_bytes`, the decoder's reference)",
            nanos_per_call(runs, iterations, || {
                black_box(postcard::from_bytes::<RecordedEventView<'_>>(black_box(&body))?);
                Ok(())
            })?,
        ),
        (
            "event into a borrowed view by `ViewDecoder` (same bytes)",
            nanos_per_call(runs, iterations, || {
                black_box(ViewDecoder::new(black_box(&body)).recorded_event()?);
                Ok(())
            })?,
        ),
        (
            "chain hash (blake3 of the record)",
            nanos_per_call(runs, iterations, || {
                black_box(codec::chain_hash(black_box(&workload.record)));
                Ok(())
            })?,
        ),
    ];
    println!(
        "\n### Record codec ({} byte events, {} byte records; median of {runs} runs)\n",
        workload.event_bytes,
        workload.record.len()
    );
    println!("| operation | ns per record |");
    println!("|---|---|");
    for (name, nanos) in rows {
        println!("| {name} | {nanos:.0} |");
    }
    Ok(())
}
