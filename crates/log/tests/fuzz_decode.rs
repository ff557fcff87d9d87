//! Fuzz targets for the record decoders of `covenant_log::codec` (stable Rust, proptest).
//!
//! `split_record`, `decode_record`, `decode_sealed_record`, `decode_view` and
//! `RecordView::parse` + `decode` are fed
//!
//! - arbitrary bytes;
//! - arbitrary postcard bodies behind a valid header and checksum (so decoding goes past the
//!   checksum into postcard);
//! - structure-aware mutations of valid records of every event type (flipped bits, set bytes,
//!   truncation, extension, insertion, removal, duplicated ranges, a splice with another record, a
//!   changed format byte, an absurd length prefix), most of them with the xxh3 checksum trailer
//!   recomputed after the mutation.
//!
//! Every decoder must return `Ok` or a `LogError::Corrupt` naming the position asked for, never
//! panic; the decoders must agree with each other; and whatever one accepts must encode again to
//! a record that decodes to the same value. (The stream-head and command-outcome decoders are
//! crate-private; the unit test `codec::tests::arbitrary_bytes_never_panic` covers them.)
//!
//! Time bound: `fuzz_for_the_budget` runs fresh-seeded rounds until `COVENANT_FUZZ_SECS`
//! (default 15) have passed; `fixed_seed_round` runs one deterministic round. A failure prints its
//! seed; `COVENANT_FUZZ_SEED=<seed>` replays that round:
//! `COVENANT_FUZZ_SECS=600 cargo nextest run --workspace -E 'binary(fuzz_decode)'` fuzzes longer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use covenant_domain::events::*;
use covenant_domain::ids::*;
use covenant_domain::values::{Currency, MAX_AMOUNT_MINOR, Money, Span, Text, Timestamp};
use covenant_domain::{CommandId, CustomerId, EventId, EventMetadata, Position, RecordedEvent};
use covenant_log::LogError;
use covenant_log::codec::{self, CHECKSUM_LEN, HASH_LEN, RECORD_FORMAT_V1, RECORD_FORMAT_V2};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

// --- the time-bounded runner (the same in `crates/proto/tests/fuzz_commands.rs`) ---

const BINARY: &str = "fuzz_decode";
/// Seconds per target binary when `COVENANT_FUZZ_SECS` is unset.
const DEFAULT_SECS: u64 = 15;
/// Cases per target and round; the budget is checked between rounds.
const ROUND_CASES: u32 = 256;
/// The seed of `fixed_seed_round`.
const FIXED_SEED: u64 = 0x00C0_7E4A_27F0_2201;

/// One property: runs `runner` over its strategy, the failure formatted with its minimal input.
struct Target {
    name: &'static str,
    run: fn(&mut TestRunner) -> Result<(), String>,
}

fn runner(seed: u64, cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        // Seeds are printed instead of written to a regressions file.
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..Config::default()
    })
}

/// Runs `test` on `strategy`; a failure (an assertion or a panic) is reported with the minimal
/// input proptest shrank it to.
fn check<S>(
    runner: &mut TestRunner,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> Result<(), String>
where
    S: Strategy,
    S::Value: fmt::Debug,
{
    runner.run(&strategy, test).map_err(|error| match error {
        TestError::Fail(reason, value) => format!("{reason}\nminimal failing input: {value:#?}"),
        TestError::Abort(reason) => format!("aborted: {reason}"),
    })
}

/// A seed no earlier round of any process used (std's randomly keyed hasher, a counter, the clock).
fn fresh_seed() -> u64 {
    static ROUNDS: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one((ROUNDS.fetch_add(1, Ordering::Relaxed), SystemTime::now()))
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(number) => Some(number),
        Err(_) => panic!("{name}={value:?} is not a whole number"),
    }
}

thread_local! {
    /// Panics seen on this thread since the target started.
    static PANICS: Cell<u32> = const { Cell::new(0) };
}

/// Prints the first panic of a target (with its location and backtrace) and not the hundreds
/// that follow while proptest shrinks the input.
fn quiet_repeated_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if PANICS.replace(PANICS.get() + 1) == 0 {
                default(info);
            }
        }));
    });
}

/// Runs one round of every target with `seed`; returns the cases run, or panics naming the seed.
fn round(targets: &[Target], seed: u64, cases: u32) -> u64 {
    quiet_repeated_panics();
    for target in targets {
        PANICS.set(0);
        let outcome = (target.run)(&mut runner(seed, cases));
        PANICS.set(0);
        if let Err(failure) = outcome {
            panic!(
                "{BINARY}: target `{}` failed with seed {seed}: {failure}\n\
                 replay: COVENANT_FUZZ_SEED={seed} cargo nextest run --workspace -E 'binary({BINARY})'",
                target.name
            );
        }
    }
    u64::from(cases) * targets.len() as u64
}

/// Fresh-seeded rounds until the budget is spent (at least one); `COVENANT_FUZZ_SEED` replays
/// one round instead.
fn fuzz_for_budget(targets: &[Target]) {
    if let Some(seed) = env_u64("COVENANT_FUZZ_SEED") {
        let cases = round(targets, seed, ROUND_CASES);
        println!("{BINARY}: replayed seed {seed}: {cases} cases passed");
        return;
    }
    let budget = Duration::from_secs(env_u64("COVENANT_FUZZ_SECS").unwrap_or(DEFAULT_SECS));
    let start = Instant::now();
    let (mut rounds, mut cases) = (0u64, 0u64);
    while rounds == 0 || start.elapsed() < budget {
        cases += round(targets, fresh_seed(), ROUND_CASES);
        rounds += 1;
    }
    println!(
        "{BINARY}: {cases} cases in {rounds} rounds of {} targets, {:.1} s (budget {} s); {}",
        targets.len(),
        start.elapsed().as_secs_f64(),
        budget.as_secs(),
        outcomes()
    );
}

// --- valid records of every event type ---

/// Hex, so a failing record can be pasted into a test.
#[derive(Clone, PartialEq, Eq)]
struct Bytes(Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes: ", self.0.len())?;
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

fn id() -> BoxedStrategy<String> {
    prop_oneof![
        8 => "[A-Za-z0-9._:@-]{1,16}",
        1 => "[A-Za-z0-9._:@-]{120,128}",
    ]
    .boxed()
}

/// Valid free text (no control characters but newline and tab), up to the long-text limit.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => Just(String::new()),
        6 => "\\PC{1,24}",
        2 => "[a-z \n\t]{1,24}",
        1 => ("\\PC", 1..1024usize).prop_map(|(unit, times)| {
            let mut text = unit.repeat(times);
            while text.len() > covenant_domain::values::LONG_TEXT_MAX {
                text.pop();
            }
            text
        }),
    ]
    .boxed()
}

fn millis() -> BoxedStrategy<i64> {
    let max = Timestamp::MAX.unix_millis();
    prop_oneof![8 => 0..=max, 1 => Just(0), 1 => Just(max)].boxed()
}

/// What one event is built from: `variant` picks the type, the rest fill its fields in order.
#[derive(Debug, Clone)]
struct Material {
    variant: usize,
    ids: [String; 4],
    texts: [String; 3],
    millis: [i64; 3],
    numbers: [u64; 2],
    small: [u32; 2],
    choices: [usize; 6],
    flags: [bool; 4],
    span: i64,
    amount: i64,
    contacts: Vec<(usize, String)>,
}

fn material() -> BoxedStrategy<Material> {
    (
        0..EVENT_TYPES.len(),
        prop::array::uniform4(id()),
        prop::array::uniform3(text()),
        prop::array::uniform3(millis()),
        prop::array::uniform2(any::<u64>()),
        prop::array::uniform2(any::<u32>()),
        prop::array::uniform6(0..16usize),
        prop::array::uniform4(any::<bool>()),
        any::<i64>(),
        1..=MAX_AMOUNT_MINOR,
        prop::collection::vec((0..4usize, text()), 0..3),
    )
        .prop_map(|(variant, ids, texts, millis, numbers, small, choices, flags, span, amount, contacts)| {
            Material { variant, ids, texts, millis, numbers, small, choices, flags, span, amount, contacts }
        })
        .boxed()
}

fn pick<T: Copy>(options: &[T], choice: usize) -> T {
    options[choice % options.len()]
}

const CHANNELS: [Channel; 6] =
    [Channel::Phone, Channel::Email, Channel::Chat, Channel::Social, Channel::InPerson, Channel::Web];
const TIERS: [Tier; 4] = [Tier::Basic, Tier::Standard, Tier::Premium, Tier::Vip];
const SENTIMENTS: [Sentiment; 4] =
    [Sentiment::Angry, Sentiment::Negative, Sentiment::Neutral, Sentiment::Positive];
const CURRENCIES: [&str; 5] = ["EUR", "USD", "JPY", "GBP", "CHF"];

impl Material {
    fn text(&self, index: usize) -> Text {
        Text::new("text", self.texts[index].as_str(), covenant_domain::values::LONG_TEXT_MAX).unwrap()
    }
    fn at(&self, index: usize) -> Timestamp {
        Timestamp::from_unix_millis_clamped(self.millis[index])
    }
    fn label(&self, index: usize) -> Label {
        Label::new(&self.ids[index]).unwrap()
    }
    fn related(&self, choice: usize, index: usize) -> RelatedRef {
        let id = &self.ids[index];
        match choice % 4 {
            0 => RelatedRef::Promise(PromiseId::new(id).unwrap()),
            1 => RelatedRef::Complaint(ComplaintId::new(id).unwrap()),
            2 => RelatedRef::Order(OrderId::new(id).unwrap()),
            _ => RelatedRef::Interaction(InteractionId::new(id).unwrap()),
        }
    }
    fn money(&self) -> Money {
        let currency = Currency::new("currency", pick(&CURRENCIES, self.choices[5])).unwrap();
        Money::positive("amount", self.amount, currency).unwrap()
    }
    fn contacts(&self) -> Vec<ContactPoint> {
        let kinds = [ContactKind::Email, ContactKind::Phone, ContactKind::Postal, ContactKind::Social];
        self.contacts
            .iter()
            .map(|(kind, value)| ContactPoint {
                kind: pick(&kinds, *kind),
                value: Text::new("value", value.as_str(), covenant_domain::values::LONG_TEXT_MAX).unwrap(),
            })
            .collect()
    }

    /// The event of type `EVENT_TYPES[variant]`.
    fn event(&self) -> Event {
        let c = self.choices;
        let f = self.flags;
        let promise = || PromiseId::new(&self.ids[0]).unwrap();
        let complaint = || ComplaintId::new(&self.ids[0]).unwrap();
        let order = || OrderId::new(&self.ids[0]).unwrap();
        let optional_related = |present: bool| present.then(|| self.related(c[3], 1));
        let event = match self.variant {
            0 => Event::CustomerRegistered {
                name: self.text(0),
                contact_points: self.contacts(),
                locale: self.label(0),
                timezone: self.text(1),
                segment: self.label(1),
                source: self.label(2),
                tier: pick(&TIERS, c[0]),
            },
            1 => Event::CustomerProfileUpdated {
                changes: ProfileChanges {
                    name: f[0].then(|| self.text(0)),
                    contact_points: f[1].then(|| self.contacts()),
                    locale: f[2].then(|| self.label(0)),
                    timezone: f[3].then(|| self.text(1)),
                    segment: c[0].is_multiple_of(2).then(|| self.label(1)),
                },
            },
            2 => Event::ConsentChanged { purpose: self.label(0), granted: f[0] },
            3 => Event::CustomerTierChanged { from: pick(&TIERS, c[0]), to: pick(&TIERS, c[1]) },
            4 => Event::CustomerChurned {
                reason: pick(
                    &[
                        ChurnReason::Service,
                        ChurnReason::Product,
                        ChurnReason::Price,
                        ChurnReason::Competitor,
                        ChurnReason::NoNeed,
                        ChurnReason::Other,
                    ],
                    c[0],
                ),
            },
            5 => Event::CustomerReactivated {},
            6 => Event::CustomerErased {},
            7 => Event::InteractionRecorded {
                interaction_id: InteractionId::new(&self.ids[0]).unwrap(),
                channel: pick(&CHANNELS, c[0]),
                direction: pick(&[Direction::Inbound, Direction::Outbound], c[1]),
                kind: pick(
                    &[
                        InteractionKind::Inquiry,
                        InteractionKind::Complaint,
                        InteractionKind::Compliment,
                        InteractionKind::Feedback,
                        InteractionKind::Sales,
                        InteractionKind::FollowUp,
                    ],
                    c[2],
                ),
                agent_id: f[0].then(|| ActorId::new(&self.ids[1]).unwrap()),
                wait_secs: self.small[0],
                handle_secs: self.small[1],
                sentiment: pick(&SENTIMENTS, c[3]),
                summary: self.text(0),
            },
            8 => Event::SocialMentionCaptured {
                platform: self.label(0),
                sentiment: pick(&SENTIMENTS, c[0]),
                reach: self.numbers[0],
            },
            9 => Event::ComplaintOpened {
                complaint_id: complaint(),
                category: pick(
                    &[
                        ComplaintCategory::BrokenPromise,
                        ComplaintCategory::ExpectationGap,
                        ComplaintCategory::Delay,
                        ComplaintCategory::Billing,
                        ComplaintCategory::Staff,
                        ComplaintCategory::Product,
                        ComplaintCategory::Other,
                    ],
                    c[0],
                ),
                severity: pick(
                    &[Severity::Minor, Severity::Moderate, Severity::Major, Severity::Critical],
                    c[1],
                ),
                priority: pick(&[Priority::Low, Priority::Normal, Priority::High, Priority::Urgent], c[2]),
                channel: pick(&CHANNELS, c[3]),
                description: self.text(0),
            },
            10 => Event::ComplaintResponded { complaint_id: complaint(), first: f[0] },
            11 => Event::ComplaintEscalated {
                complaint_id: complaint(),
                to_team: f[0].then(|| TeamId::new(&self.ids[1]).unwrap()),
                reason: self.text(0),
            },
            12 => Event::ComplaintResolved {
                complaint_id: complaint(),
                outcome: pick(
                    &[
                        ResolutionOutcome::Resolved,
                        ResolutionOutcome::PartiallyResolved,
                        ResolutionOutcome::Unresolved,
                        ResolutionOutcome::Withdrawn,
                    ],
                    c[0],
                ),
            },
            13 => Event::ComplaintReopened { complaint_id: complaint(), reason: self.text(0) },
            14 => Event::SlaBreached {
                complaint_id: complaint(),
                target: pick(&[SlaTarget::FirstReply, SlaTarget::Resolution], c[0]),
                due_at: self.at(0),
                detected_at: self.at(1),
            },
            15 => Event::PromiseMade {
                promise_id: promise(),
                kind: pick(
                    &[
                        PromiseKind::Callback,
                        PromiseKind::Delivery,
                        PromiseKind::Refund,
                        PromiseKind::Fix,
                        PromiseKind::Info,
                        PromiseKind::Visit,
                        PromiseKind::Price,
                        PromiseKind::Compensation,
                        PromiseKind::AdvertisedClaim,
                        PromiseKind::Other,
                    ],
                    c[0],
                ),
                description: self.text(0),
                made_by: ActorId::new(&self.ids[2]).unwrap(),
                due_at: self.at(0),
                grace: Span::from_millis(self.span),
                related_ref: optional_related(f[0]),
            },
            16 => Event::PromiseRenegotiated {
                promise_id: promise(),
                previous_due_at: self.at(0),
                new_due_at: self.at(1),
                customer_consented: f[0],
            },
            17 => Event::PromiseKept { promise_id: promise(), kept_at: self.at(0), evidence: self.text(0) },
            18 => Event::PromisePartiallyKept {
                promise_id: promise(),
                fraction_permille: (self.small[0] % 65_536) as u16,
                evidence: self.text(0),
            },
            19 => Event::PromiseBroken {
                promise_id: promise(),
                detection: pick(
                    &[BreakDetection::Deadline, BreakDetection::CustomerReport, BreakDetection::Audit],
                    c[0],
                ),
                due_at: self.at(0),
                detected_at: self.at(1),
                reason: self.text(0),
            },
            20 => Event::PromiseCancelled {
                promise_id: promise(),
                by: pick(&[CancelledBy::Company, CancelledBy::Customer], c[0]),
                customer_consented: f[0],
                reason: self.text(0),
            },
            21 => Event::ApologyIssued { related_ref: self.related(c[0], 1) },
            22 => Event::CompensationGranted {
                related_ref: self.related(c[0], 1),
                kind: pick(
                    &[
                        CompensationKind::Refund,
                        CompensationKind::Credit,
                        CompensationKind::Gift,
                        CompensationKind::Discount,
                        CompensationKind::Replacement,
                        CompensationKind::Waiver,
                    ],
                    c[1],
                ),
                amount: self.money(),
            },
            23 => Event::SurveyAnswered {
                survey_id: SurveyId::new(&self.ids[0]).unwrap(),
                kind: pick(&[SurveyKind::Nps, SurveyKind::Csat, SurveyKind::Ces], c[0]),
                score: (self.small[0] % 256) as u8,
                comment: self.text(0),
                related_ref: optional_related(f[0]),
            },
            24 => Event::PurchaseRecorded { order_id: order(), amount: self.money() },
            _ => Event::RefundIssued { order_id: order(), amount: self.money(), reason: self.text(0) },
        };
        assert_eq!(event.event_type(), EVENT_TYPES[self.variant], "Material::event misses a type");
        event
    }
}

/// A valid recorded event of any type, with every envelope field drawn.
fn recorded_event() -> BoxedStrategy<RecordedEvent> {
    (
        (any::<u128>(), id(), any::<u64>(), any::<u16>(), any::<u64>(), millis(), id()),
        (millis(), 0..4usize, id(), prop::option::of(id()), prop::option::of(0..6usize)),
        (prop::option::of(id()), prop::option::of(id()), material()),
    )
        .prop_map(
            |(
                (event_id, customer, stream_version, partition, offset, recorded_at, command_id),
                (occurred_at, actor_kind, actor_id, team, channel),
                (correlation, causation, material),
            )| RecordedEvent {
                event_id: EventId(uuid::Uuid::from_u128(event_id)),
                customer_id: CustomerId::new(customer).unwrap(),
                stream_version,
                position: Position { partition, offset },
                recorded_at: Timestamp::from_unix_millis_clamped(recorded_at),
                command_id: CommandId::new(command_id).unwrap(),
                metadata: EventMetadata {
                    occurred_at: Timestamp::from_unix_millis_clamped(occurred_at),
                    actor: Actor {
                        kind: pick(
                            &[
                                ActorKind::Customer,
                                ActorKind::Agent,
                                ActorKind::System,
                                ActorKind::Integration,
                            ],
                            actor_kind,
                        ),
                        id: ActorId::new(actor_id).unwrap(),
                    },
                    team: team.map(|team| TeamId::new(team).unwrap()),
                    channel: channel.map(|channel| CHANNELS[channel]),
                    correlation_id: correlation.map(|id| Label::new(id).unwrap()),
                    causation_id: causation.map(|id| Label::new(id).unwrap()),
                },
                event: material.event(),
            },
        )
        .boxed()
}

/// A valid record as the log stores it: an event, its chain link and its sealed personal data.
#[derive(Clone)]
struct ValidRecord {
    event: RecordedEvent,
    prev_hash: [u8; HASH_LEN],
    sealed: Bytes,
}

impl fmt::Debug for ValidRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidRecord")
            .field("event", &self.event)
            .field("prev_hash", &Bytes(self.prev_hash.to_vec()))
            .field("sealed", &self.sealed)
            .field("encoded", &Bytes(self.encode()))
            .finish()
    }
}

impl ValidRecord {
    fn encode(&self) -> Vec<u8> {
        codec::encode_sealed_record(&self.prev_hash, &self.event, &self.sealed.0).unwrap().0
    }
}

fn valid_record() -> BoxedStrategy<ValidRecord> {
    (
        recorded_event(),
        any::<[u8; HASH_LEN]>(),
        prop_oneof![1 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 1..96)],
    )
        .prop_map(|(event, prev_hash, sealed)| ValidRecord { event, prev_hash, sealed: Bytes(sealed) })
        .boxed()
}

// --- mutations ---

/// One edit of a record's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBits {
        at: Index,
        mask: u8,
    },
    SetByte {
        at: Index,
        value: u8,
    },
    Truncate {
        at: Index,
    },
    Extend {
        bytes: Bytes,
    },
    Insert {
        at: Index,
        bytes: Bytes,
    },
    Remove {
        at: Index,
        len: usize,
    },
    Duplicate {
        from: Index,
        len: usize,
        to: Index,
    },
    /// This record up to `at`, then the donor record from `from`.
    Splice {
        at: Index,
        from: Index,
    },
    Format {
        value: u8,
    },
    /// A varint of `u64::MAX` (or a run of continuation bytes): an absurd length prefix or
    /// number where postcard expects one.
    HugeVarint {
        at: Index,
        unterminated: bool,
    },
}

fn mutation() -> BoxedStrategy<Mutation> {
    let interesting =
        prop_oneof![Just(0x00u8), Just(0x01), Just(0x02), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()];
    let some_bytes = prop::collection::vec(any::<u8>(), 1..48).prop_map(Bytes);
    prop_oneof![
        4 => (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::FlipBits { at, mask }),
        3 => (any::<Index>(), interesting).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        2 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        1 => some_bytes.clone().prop_map(|bytes| Mutation::Extend { bytes }),
        2 => (any::<Index>(), some_bytes).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<Index>(), 1..24usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => (any::<Index>(), 1..32usize, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(at, from)| Mutation::Splice { at, from }),
        1 => prop_oneof![Just(0u8), Just(1), Just(2), Just(3), any::<u8>()]
            .prop_map(|value| Mutation::Format { value }),
        1 => (any::<Index>(), any::<bool>())
            .prop_map(|(at, unterminated)| Mutation::HugeVarint { at, unterminated }),
    ]
    .boxed()
}

/// `at` within `0..len` (and 0 for empty input: `Index::index` needs a non-empty range).
fn index(at: &Index, len: usize) -> usize {
    if len == 0 { 0 } else { at.index(len) }
}

fn apply(bytes: &mut Vec<u8>, donor: &[u8], mutation: &Mutation) {
    let len = bytes.len();
    match mutation {
        Mutation::FlipBits { at, mask } => {
            if len > 0 {
                bytes[index(at, len)] ^= mask;
            }
        }
        Mutation::SetByte { at, value } => {
            if len > 0 {
                bytes[index(at, len)] = *value;
            }
        }
        Mutation::Truncate { at } => bytes.truncate(index(at, len)),
        Mutation::Extend { bytes: extra } => bytes.extend_from_slice(&extra.0),
        Mutation::Insert { at, bytes: extra } => {
            let at = index(at, len + 1);
            bytes.splice(at..at, extra.0.iter().copied());
        }
        Mutation::Remove { at, len: count } => {
            let at = index(at, len);
            bytes.drain(at..(at + count).min(len));
        }
        Mutation::Duplicate { from, len: count, to } => {
            let from = index(from, len);
            let chunk = bytes[from..(from + count).min(len)].to_vec();
            let to = index(to, len + 1);
            bytes.splice(to..to, chunk);
        }
        Mutation::Splice { at, from } => {
            bytes.truncate(index(at, len + 1));
            bytes.extend_from_slice(&donor[index(from, donor.len() + 1)..]);
        }
        Mutation::Format { value } => {
            if len > 0 {
                bytes[0] = *value;
            }
        }
        Mutation::HugeVarint { at, unterminated } => {
            let at = index(at, len + 1);
            let varint: &[u8] = if *unterminated {
                &[0xff; 12]
            } else {
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
            };
            let end = (at + varint.len()).min(len);
            bytes.splice(at..end, varint.iter().copied());
        }
    }
}

/// A valid record, edited.
#[derive(Debug, Clone)]
struct Mutated {
    record: ValidRecord,
    donor: ValidRecord,
    mutations: Vec<Mutation>,
    /// Recompute the checksum trailer after editing (the edits then apply to what it covers),
    /// so that decoding goes past the checksum.
    reseal: bool,
    /// Decode at the record's own position (else at `elsewhere`).
    at_home: bool,
    elsewhere: Position,
}

impl Mutated {
    fn position(&self) -> Position {
        if self.at_home { self.record.event.position } else { self.elsewhere }
    }

    fn bytes(&self) -> Vec<u8> {
        let (original, donor) = (self.record.encode(), self.donor.encode());
        if !self.reseal {
            let mut bytes = original;
            self.mutations.iter().for_each(|mutation| apply(&mut bytes, &donor, mutation));
            return bytes;
        }
        let mut bytes = original[..original.len() - CHECKSUM_LEN].to_vec();
        let donor = &donor[..donor.len() - CHECKSUM_LEN];
        self.mutations.iter().for_each(|mutation| apply(&mut bytes, donor, mutation));
        let checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        bytes
    }
}

fn position() -> BoxedStrategy<Position> {
    prop_oneof![
        Just(Position { partition: 0, offset: 0 }),
        (any::<u16>(), any::<u64>()).prop_map(|(partition, offset)| Position { partition, offset }),
    ]
    .boxed()
}

fn mutated() -> BoxedStrategy<Mutated> {
    (
        valid_record(),
        valid_record(),
        prop::collection::vec(mutation(), 1..5),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.9),
        position(),
    )
        .prop_map(|(record, donor, mutations, reseal, at_home, elsewhere)| Mutated {
            record,
            donor,
            mutations,
            reseal,
            at_home,
            elsewhere,
        })
        .boxed()
}

// --- the properties every decoder must keep ---

/// How the decoders answered, for the summary line (so a generator that stops reaching past the
/// checksum shows).
static REFUSED_AT_CHECKSUM: AtomicU64 = AtomicU64::new(0);
static REFUSED_PAST_CHECKSUM: AtomicU64 = AtomicU64::new(0);
static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static EDITED_ACCEPTED: AtomicU64 = AtomicU64::new(0);
static EDITED_OUT_OF_RANGE: AtomicU64 = AtomicU64::new(0);

fn outcomes() -> String {
    format!(
        "records refused by framing or checksum: {}, refused past the checksum: {}, decoded: {} \
         (of which edited records: {}, {} of them with an instant outside 1970..=2200)",
        REFUSED_AT_CHECKSUM.load(Ordering::Relaxed),
        REFUSED_PAST_CHECKSUM.load(Ordering::Relaxed),
        ACCEPTED.load(Ordering::Relaxed),
        EDITED_ACCEPTED.load(Ordering::Relaxed),
        EDITED_OUT_OF_RANGE.load(Ordering::Relaxed)
    )
}

/// Runs every decoder on `value` read at `position`: none may panic, every refusal is a
/// `Corrupt` error naming `position`, the decoders agree, and an accepted record encodes again
/// to one that decodes to the same value. Returns what `decode_record` accepted.
fn check_decoders(position: Position, value: &[u8]) -> Result<Option<RecordedEvent>, TestCaseError> {
    let split = codec::split_record(position, value);
    let record = codec::decode_record(position, value);
    let sealed = codec::decode_sealed_record(position, value);
    let view = codec::decode_view(position, value);
    let parsed = codec::RecordView::parse(position, value);

    let errors = [
        ("split_record", split.as_ref().err()),
        ("decode_record", record.as_ref().err()),
        ("decode_sealed_record", sealed.as_ref().err()),
        ("decode_view", view.as_ref().err()),
        ("RecordView::parse", parsed.as_ref().err()),
    ];
    for (decoder, error) in errors {
        if let Some(error) = error {
            let names_position = matches!(error, LogError::Corrupt { position: at, .. } if *at == position);
            prop_assert!(names_position, "{decoder} refused with an error not naming {position:?}: {error}");
        }
    }

    let raw = match split {
        Ok(raw) => raw,
        Err(_) => {
            REFUSED_AT_CHECKSUM.fetch_add(1, Ordering::Relaxed);
            // Nothing decodes what fails its checksum or framing.
            prop_assert!(record.is_err() && sealed.is_err() && view.is_err() && parsed.is_err());
            return Ok(None);
        }
    };
    prop_assert!(raw.format == RECORD_FORMAT_V1 || raw.format == RECORD_FORMAT_V2);
    prop_assert_eq!(raw.prev_hash.len(), HASH_LEN);
    prop_assert_eq!(1 + HASH_LEN + raw.body.len() + CHECKSUM_LEN, value.len());

    // The borrowed full view and the owned decoder agree.
    match (&record, &view) {
        (Ok(event), Ok(view)) => {
            let owned = view.to_owned();
            prop_assert_eq!(owned.as_ref().ok(), Some(event), "decode_view disagrees: {:?}", owned);
        }
        (Ok(event), Err(error)) => {
            return Err(TestCaseError::fail(format!(
                "decode_record accepted {event:?} but decode_view refused: {error}"
            )));
        }
        (Err(error), Ok(view)) => {
            let owned = view.to_owned();
            prop_assert!(
                owned.is_err(),
                "decode_view accepted {:?} but decode_record refused: {}",
                owned,
                error
            );
        }
        (Err(_), Err(_)) => {}
    }

    // The envelope view agrees with the full decode.
    match (&record, &parsed) {
        (Ok(event), Ok(parsed)) => {
            let envelope = &parsed.envelope;
            prop_assert_eq!(envelope.event_id, event.event_id);
            prop_assert_eq!(envelope.customer_id, event.customer_id.as_str());
            prop_assert_eq!(envelope.stream_version, event.stream_version);
            prop_assert_eq!(envelope.position, event.position);
            prop_assert_eq!(envelope.recorded_at, event.recorded_at);
            prop_assert_eq!(envelope.command_id, event.command_id.as_str());
            prop_assert_eq!(envelope.metadata.actor.id, event.metadata.actor.id.as_str());
            prop_assert_eq!(parsed.event_type(), event.event_type());
            prop_assert_eq!(parsed.decode().ok(), Some(event.clone()));
            prop_assert_eq!(parsed.view().ok(), view.as_ref().ok().cloned());
        }
        (Ok(event), Err(error)) => {
            return Err(TestCaseError::fail(format!(
                "decode_record accepted {event:?} but RecordView::parse refused: {error}"
            )));
        }
        (Err(_), Ok(parsed)) => {
            // The envelope may decode when the payload does not; the full decode still refuses.
            let _ = parsed.event_type();
            prop_assert!(parsed.decode().is_err(), "RecordView::decode accepted what decode_record refused");
            prop_assert_eq!(parsed.view().ok(), view.as_ref().ok().cloned());
        }
        (Err(_), Err(_)) => {}
    }

    // The sealed decoding agrees, and keeps the sealed bytes of format 2 only.
    match &sealed {
        Ok((event, rest)) => {
            prop_assert_eq!(record.as_ref().ok(), Some(event));
            prop_assert!(raw.body.ends_with(rest));
            prop_assert!(raw.format == RECORD_FORMAT_V2 || rest.is_empty(), "format 1 with sealed bytes");
        }
        Err(error) => prop_assert!(
            record.is_err() || raw.format == RECORD_FORMAT_V1,
            "decode_record accepted a format-2 record that decode_sealed_record refused: {}",
            error
        ),
    }

    // What is accepted encodes again, to a record that decodes to the same value; encoding that
    // is a fixed point (old formats and non-canonical varints are rewritten once, then stable).
    if let Ok((event, rest)) = &sealed {
        let prev_hash: [u8; HASH_LEN] = raw.prev_hash.try_into().unwrap();
        let (again, hash) = codec::encode_sealed_record(&prev_hash, event, rest)
            .map_err(|error| TestCaseError::fail(format!("an accepted event does not encode: {error}")))?;
        prop_assert_eq!(hash, codec::chain_hash(&again));
        let (event_again, rest_again) = codec::decode_sealed_record(position, &again).map_err(|error| {
            TestCaseError::fail(format!("the re-encoded record does not decode: {error}"))
        })?;
        prop_assert_eq!(&event_again, event);
        prop_assert_eq!(rest_again, *rest);
        prop_assert_eq!(codec::decode_record(position, &again).ok(), Some(event.clone()));
        let (third, _) = codec::encode_sealed_record(&prev_hash, &event_again, rest_again).unwrap();
        prop_assert!(third == again, "encoding a decoded record is not stable");
    }
    let counter = if record.is_ok() { &ACCEPTED } else { &REFUSED_PAST_CHECKSUM };
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(record.ok())
}

/// Every instant of a recorded event.
fn instants(event: &RecordedEvent) -> Vec<Timestamp> {
    let mut instants = vec![event.recorded_at, event.metadata.occurred_at];
    match &event.event {
        Event::SlaBreached { due_at, detected_at, .. } | Event::PromiseBroken { due_at, detected_at, .. } => {
            instants.extend([*due_at, *detected_at])
        }
        Event::PromiseMade { due_at, .. } => instants.push(*due_at),
        Event::PromiseRenegotiated { previous_due_at, new_due_at, .. } => {
            instants.extend([*previous_due_at, *new_due_at])
        }
        Event::PromiseKept { kept_at, .. } => instants.push(*kept_at),
        _ => {}
    }
    instants
}

fn arbitrary_bytes(runner: &mut TestRunner) -> Result<(), String> {
    let bytes = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..160),
        1 => prop::collection::vec(any::<u8>(), 0..2048),
        // Around the shortest possible record.
        1 => prop::collection::vec(any::<u8>(), 38..44),
    ];
    check(runner, (bytes.prop_map(Bytes), position()), |(bytes, position)| {
        check_decoders(position, &bytes.0).map(drop)
    })
}

/// `[format][prev_hash][body][valid checksum]`: arbitrary postcard behind a valid frame.
fn arbitrary_bodies(runner: &mut TestRunner) -> Result<(), String> {
    let format = prop_oneof![4 => Just(RECORD_FORMAT_V2), 2 => Just(RECORD_FORMAT_V1), 1 => any::<u8>()];
    let body = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..160),
        1 => prop::collection::vec(any::<u8>(), 0..1024),
        // Plausible prefixes: a UUID, then small varints and short ASCII strings.
        2 => prop::collection::vec(prop_oneof![0u8..8, b'a'..=b'z', any::<u8>()], 17..200),
    ];
    let strategy = (format, any::<[u8; HASH_LEN]>(), body.prop_map(Bytes), position());
    check(runner, strategy, |(format, prev_hash, body, position)| {
        let mut value = vec![format];
        value.extend_from_slice(&prev_hash);
        value.extend_from_slice(&body.0);
        let checksum = xxhash_rust::xxh3::xxh3_64(&value);
        value.extend_from_slice(&checksum.to_le_bytes());
        check_decoders(position, &value).map(drop)
    })
}

/// Valid records decode exactly; edited ones decode consistently or are refused.
fn mutated_records(runner: &mut TestRunner) -> Result<(), String> {
    check(runner, mutated(), |case| {
        // The unedited record first: the generator makes valid records of every type.
        let original = case.record.encode();
        let decoded = check_decoders(case.record.event.position, &original)?;
        prop_assert_eq!(decoded.as_ref(), Some(&case.record.event));
        let (event, sealed) = codec::decode_sealed_record(case.record.event.position, &original).unwrap();
        prop_assert_eq!(&event, &case.record.event);
        prop_assert_eq!(sealed, &case.record.sealed.0[..]);

        let bytes = case.bytes();
        if let Some(event) = check_decoders(case.position(), &bytes)? {
            EDITED_ACCEPTED.fetch_add(1, Ordering::Relaxed);
            // Not an error here: reads trust a record whose checksum holds (a forger who
            // recomputed it is found by `verify`'s chain), so instants are not re-checked.
            if instants(&event).iter().any(|at| !(Timestamp::MIN..=Timestamp::MAX).contains(at)) {
                EDITED_OUT_OF_RANGE.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !case.reseal {
            // Without a recomputed checksum, edited bytes fail it (xxh3-64), unless the edits
            // rebuilt a whole record: undid each other, or spliced in all of the donor.
            let rebuilt = bytes == original || bytes == case.donor.encode();
            prop_assert!(rebuilt || codec::split_record(case.position(), &bytes).is_err());
        }
        Ok(())
    })
}

fn targets() -> [Target; 3] {
    [
        Target { name: "arbitrary_bytes", run: arbitrary_bytes },
        Target { name: "arbitrary_bodies_behind_a_valid_checksum", run: arbitrary_bodies },
        Target { name: "mutated_valid_records", run: mutated_records },
    ]
}

/// One deterministic round: the same cases on every run, so a failure here reproduces as is.
#[test]
fn fixed_seed_round() {
    round(&targets(), FIXED_SEED, ROUND_CASES);
}

/// Fresh-seeded rounds for `COVENANT_FUZZ_SECS` (default 15) seconds.
#[test]
fn fuzz_for_the_budget() {
    fuzz_for_budget(&targets());
}
