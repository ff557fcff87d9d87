//! `crash-writer`: the child process of the `log_crash` test. It appends to a real event log
//! with `fsync` durability as fast as it can, forever, and reports every acknowledged append on
//! stdout, so that the test can SIGKILL it at any moment and check that nothing acknowledged
//! was lost and nothing was half written.
//!
//! Usage: `crash-writer <data-dir> <partitions> <producers> <customers> [<run>]`
//!
//! - Opens `LogConfig::new(data-dir).with_partitions(partitions).with_durability(Fsync)`, then
//!   prints `READY`.
//! - Starts `producers` tasks; each picks customers `cust-0000 .. cust-<customers - 1>` at
//!   random. The first command for a customer in a run is its registration (`c-<customer>-reg`,
//!   deduplicated by the log when an earlier run already registered it); then four times out
//!   of five an interaction, else a promise followed, once acknowledged, by keeping it.
//! - After each acknowledged append prints, whole and flushed,
//!   `ACK <customer_id> <command_id> <partition> <first_offset> <event_count> <stream_version>`.
//!
//! Command ids are `c-<customer>-r<run>-<n>-{i,p,k}` with `<n>` a counter of the run; the command
//! is rebuilt from the id by `covenant_tests::crash::command_for` (the scheme is documented in
//! `tests/src/crash.rs`), so the test can retry any command it finds in the log. `<run>` (default
//! 0) must differ between starts on the same directory so that new commands get new ids.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use covenant_log::{Durability, EventLog, LogConfig};
use covenant_tests::crash::{self, Ack, Kind};
use tokio::sync::OnceCell;

/// Command-line arguments.
#[derive(Debug)]
struct Args {
    dir: PathBuf,
    partitions: u16,
    producers: usize,
    customers: usize,
    run: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(4..=5).contains(&args.len()) {
        bail!("usage: crash-writer <data-dir> <partitions> <producers> <customers> [<run>]");
    }
    let args = Args {
        dir: PathBuf::from(&args[0]),
        partitions: args[1].parse().context("partitions")?,
        producers: args[2].parse().context("producers")?,
        customers: args[3].parse().context("customers")?,
        run: args.get(4).map(|run| run.parse()).transpose().context("run")?.unwrap_or(0),
    };
    if args.producers == 0 || args.customers == 0 {
        bail!("producers and customers must be at least 1");
    }
    Ok(args)
}

/// Writes one whole line to stdout and flushes it.
fn print_line(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).context("write to stdout")?;
    out.flush().context("flush stdout")?;
    Ok(())
}

/// State shared by the producers.
#[derive(Debug)]
struct Shared {
    log: EventLog,
    run: u64,
    customers: Vec<String>,
    /// Set once the customer's registration was acknowledged in this run.
    registered: Vec<OnceCell<()>>,
    next_n: AtomicU64,
}

impl Shared {
    /// Appends `command_id` on `customer` and reports the acknowledgement.
    async fn append(&self, customer: &str, command_id: &str) -> anyhow::Result<()> {
        let request = crash::request(customer, command_id)?;
        let outcome =
            self.log.append(request).await.with_context(|| format!("append {command_id} on {customer}"))?;
        print_line(&Ack::new(customer, command_id, &outcome).line())
    }

    async fn produce(&self, seed: u64) -> anyhow::Result<()> {
        let mut rng = XorShift::new(seed);
        loop {
            let index = usize::try_from(rng.next() % self.customers.len() as u64)?;
            let customer = &self.customers[index];
            let register_id = crash::register_id(customer);
            self.registered[index].get_or_try_init(|| self.append(customer, &register_id)).await?;
            let n = self.next_n.fetch_add(1, Ordering::Relaxed);
            if rng.next().is_multiple_of(5) {
                self.append(customer, &crash::command_id(customer, self.run, n, Kind::Promise)).await?;
                self.append(customer, &crash::command_id(customer, self.run, n, Kind::Keep)).await?;
            } else {
                self.append(customer, &crash::command_id(customer, self.run, n, Kind::Interaction)).await?;
            }
        }
    }
}

/// A small xorshift64* generator: enough to spread producers over customers.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config =
        LogConfig::new(&args.dir).with_partitions(args.partitions).with_durability(Durability::Fsync);
    let log =
        EventLog::open(config).await.with_context(|| format!("open the log at {}", args.dir.display()))?;
    print_line(&format!("{}\n", crash::READY))?;
    let shared = Arc::new(Shared {
        log,
        run: args.run,
        customers: (0..args.customers).map(crash::customer_name).collect(),
        registered: (0..args.customers).map(|_| OnceCell::new()).collect(),
        next_n: AtomicU64::new(0),
    });
    let clock_seed =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_nanos() as u64).unwrap_or(0);
    let mut producers = tokio::task::JoinSet::new();
    for producer in 0..args.producers as u64 {
        let shared = Arc::clone(&shared);
        let seed = clock_seed ^ producer.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        producers.spawn(async move { shared.produce(seed).await });
    }
    // Producers only end on an error; the first one ends the process.
    while let Some(result) = producers.join_next().await {
        result.context("producer task")??;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start tokio")?;
    runtime.block_on(run(args))
}
