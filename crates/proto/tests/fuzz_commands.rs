//! Fuzz targets for command validation and event-envelope decoding in `covenant_proto::convert`
//! (stable Rust, proptest): what a gRPC or NATS peer can send must be refused with a
//! `ConvertError` naming a field, never panic.
//!
//! - `CommandRequest::try_from(v1::BatchCommand)` on `prost::Message::decode` of arbitrary bytes,
//!   of edited encodings of commands, and on structured commands of all 27 kinds with hostile
//!   fields: strings of any unicode, control characters, empty, at and past every byte limit;
//!   enum numbers out of range (any `i32`); money with negative, zero and absurd amounts and bad
//!   currencies; timestamps and durations with extreme seconds and nanos; missing headers, actors,
//!   amounts and references.
//! - `RecordedEvent::try_from(v1::EventEnvelope)` on decoded arbitrary bytes, on edited encodings
//!   of valid envelopes of every event type, and on valid envelopes with hostile header fields.
//!
//! Besides "no panic": a refusal names a field path the API has, its message starts with that
//! path; a customer or command id outside 1..=128 bytes of `[A-Za-z0-9._:@-]` is always refused,
//! naming it; an accepted command keeps the text byte limits (256 for short texts, 4096 for long
//! ones, no control characters), amounts in 1..=10^15 of an ISO currency and instants in
//! 1970..=2200, and converts back to the same wire command (events: the same envelope).
//!
//! Time bound: `fuzz_for_the_budget` runs fresh-seeded rounds until `COVENANT_FUZZ_SECS`
//! (default 15) have passed; `fixed_seed_round` runs one deterministic round. A failure prints its
//! seed; `COVENANT_FUZZ_SEED=<seed>` replays that round:
//! `COVENANT_FUZZ_SECS=600 cargo nextest run --workspace -E 'binary(fuzz_commands)'` fuzzes longer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use covenant_domain::Command;
use covenant_domain::events::*;
use covenant_domain::ids::*;
use covenant_domain::values::{
    Currency, LONG_TEXT_MAX, MAX_AMOUNT_MINOR, Money, SHORT_TEXT_MAX, Span, Text, Timestamp,
};
use covenant_domain::{CommandId, CustomerId, EventId, EventMetadata, Position, RecordedEvent};
use covenant_proto::convert::{CommandRequest, ConvertError, Pii, envelope};
use covenant_proto::v1;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use prost::Message;

// --- the time-bounded runner (the same in `crates/log/tests/fuzz_decode.rs`) ---

const BINARY: &str = "fuzz_commands";
/// Seconds per target binary when `COVENANT_FUZZ_SECS` is unset.
const DEFAULT_SECS: u64 = 15;
/// Cases per target and round; the budget is checked between rounds.
const ROUND_CASES: u32 = 256;
/// The seed of `fixed_seed_round`.
const FIXED_SEED: u64 = 0x00C0_7E4A_27F0_2202;

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

// --- hostile values ---

/// Hex, so failing bytes can be pasted into a test.
#[derive(Clone, PartialEq, Eq)]
struct Bytes(Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes: ", self.0.len())?;
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// A string of exactly `len` bytes made of `unit` (then ASCII `a` to make up the length).
fn sized(unit: &str, len: usize) -> String {
    let mut text = unit.repeat(len / unit.len());
    text.extend(std::iter::repeat_n('a', len - text.len()));
    text
}

/// Anything a peer can put in a string field.
fn hostile_string() -> BoxedStrategy<String> {
    let lengths = vec![127usize, 128, 129, 255, 256, 257, 4095, 4096, 4097, 65_536];
    prop_oneof![
        3 => "[A-Za-z0-9._:@-]{1,16}",
        2 => "\\PC{0,24}",
        1 => Just(String::new()),
        // Any unicode scalar, control characters included.
        3 => prop::collection::vec(any::<char>(), 1..24).prop_map(String::from_iter),
        1 => "[\\x00-\\x1f\\x7f\u{80}-\u{9f}]{1,8}",
        1 => "[ \n\t]{1,4}",
        // At and just past every byte limit, in one- to four-byte characters.
        2 => (prop::sample::select(lengths), prop::sample::select(vec!["a", "-", "é", "€", "😀", "\u{0}"]))
            .prop_map(|(len, unit)| sized(unit, len)),
        1 => ("\\PC", 1..20_000usize).prop_map(|(unit, times)| unit.repeat(times)),
    ]
    .boxed()
}

/// Mostly a valid identifier, sometimes anything.
fn id_field() -> BoxedStrategy<String> {
    prop_oneof![12 => "[A-Za-z0-9._:@-]{1,20}", 1 => "[A-Za-z0-9._:@-]{120,136}", 2 => hostile_string()]
        .boxed()
}

/// Mostly valid short free text, sometimes anything.
fn text_field() -> BoxedStrategy<String> {
    prop_oneof![12 => "[^\\p{C}]{0,40}", 1 => Just(String::new()), 2 => hostile_string()].boxed()
}

/// An optional id: `""` is absent on the wire.
fn optional_id_field() -> BoxedStrategy<String> {
    prop_oneof![1 => Just(String::new()), 3 => id_field()].boxed()
}

/// An enum number: mostly one of the `max` defined (1..=max), else 0 (UNSPECIFIED), just past
/// the end, negative or any `i32`.
#[derive(Debug, Clone, Copy)]
enum EnumPick {
    Defined(u8),
    Number(i32),
}

impl EnumPick {
    fn number(self, max: i32) -> i32 {
        match self {
            EnumPick::Defined(choice) => 1 + i32::from(choice) % max,
            EnumPick::Number(number) => number,
        }
    }
}

fn enum_pick() -> BoxedStrategy<EnumPick> {
    prop_oneof![
        14 => any::<u8>().prop_map(EnumPick::Defined),
        1 => prop_oneof![Just(0), Just(-1), Just(i32::MIN), Just(i32::MAX), 1..=12i32, any::<i32>()]
            .prop_map(EnumPick::Number),
    ]
    .boxed()
}

/// 2200-01-01T00:00:00Z, the domain's last instant, in seconds.
const MAX_SECONDS: i64 = Timestamp::MAX.unix_millis() / 1000;

fn seconds() -> BoxedStrategy<i64> {
    prop_oneof![
        12 => 0..=MAX_SECONDS,
        1 => prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1),
            Just(0),
            Just(MAX_SECONDS),
            Just(MAX_SECONDS + 1),
            Just(i64::MAX / 1000),
            Just(i64::MAX / 1000 + 1),
            Just(i64::MIN / 1000 - 1),
            // Years 1 and 9999, protobuf's own range.
            Just(-62_135_596_800),
            Just(253_402_300_799),
            any::<i64>(),
        ],
    ]
    .boxed()
}

fn nanos() -> BoxedStrategy<i32> {
    prop_oneof![
        12 => 0..1_000_000_000i32,
        1 => prop_oneof![
            Just(-1),
            Just(999_999_999),
            Just(1_000_000_000),
            Just(-999_999_999),
            Just(i32::MIN),
            Just(i32::MAX),
            any::<i32>(),
        ],
    ]
    .boxed()
}

fn timestamp() -> BoxedStrategy<prost_types::Timestamp> {
    (seconds(), nanos()).prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }).boxed()
}

fn duration() -> BoxedStrategy<prost_types::Duration> {
    let seconds = prop_oneof![
        8 => 0..=30 * 86_400i64,
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1), Just(i64::MAX / 1000 + 1), any::<i64>()],
    ];
    let nanos = prop_oneof![8 => 0..1_000_000_000i32, 1 => nanos()];
    (seconds, nanos).prop_map(|(seconds, nanos)| prost_types::Duration { seconds, nanos }).boxed()
}

fn money() -> BoxedStrategy<v1::Money> {
    let amount = prop_oneof![
        10 => 1..=MAX_AMOUNT_MINOR,
        1 => prop_oneof![
            Just(0),
            Just(-1),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(MAX_AMOUNT_MINOR),
            Just(MAX_AMOUNT_MINOR + 1),
            any::<i64>(),
        ],
    ];
    let currency = prop_oneof![
        10 => prop::sample::select(vec!["EUR", "USD", "JPY", "CHF", "GBP", "BHD"]).prop_map(String::from),
        1 => prop::sample::select(vec!["", "eur", "EURO", "EU", "ZZZ", "QQQ", "€", "E\u{0}R", "ÉUR", "EUR "])
            .prop_map(String::from),
        1 => "[A-Z]{3}",
        1 => hostile_string(),
    ];
    (amount, currency).prop_map(|(amount_minor, currency)| v1::Money { amount_minor, currency }).boxed()
}

fn related_ref() -> BoxedStrategy<v1::RelatedRef> {
    use v1::related_ref::Target;
    let target = (0..4usize, id_field()).prop_map(|(kind, id)| match kind {
        0 => Target::PromiseId(id),
        1 => Target::ComplaintId(id),
        2 => Target::OrderId(id),
        _ => Target::InteractionId(id),
    });
    prop::option::weighted(0.95, target).prop_map(|target| v1::RelatedRef { target }).boxed()
}

fn contact_points() -> BoxedStrategy<Vec<v1::ContactPoint>> {
    prop::collection::vec(
        (enum_pick(), text_field())
            .prop_map(|(kind, value)| v1::ContactPoint { kind: kind.number(4), value }),
        0..3,
    )
    .boxed()
}

fn profile_changes() -> BoxedStrategy<v1::ProfileChanges> {
    (
        prop::option::of(text_field()),
        prop::bool::weighted(0.3),
        contact_points(),
        prop::option::of(id_field()),
        prop::option::of(text_field()),
        prop::option::of(id_field()),
    )
        .prop_map(|(name, contact_points_changed, contact_points, locale, timezone, segment)| {
            v1::ProfileChanges { name, contact_points_changed, contact_points, locale, timezone, segment }
        })
        .boxed()
}

fn header() -> BoxedStrategy<v1::CommandHeader> {
    (
        (id_field(), id_field(), prop::option::of(any::<u64>()), prop::option::weighted(0.5, timestamp())),
        prop::option::weighted(0.95, (enum_pick(), id_field())),
        (optional_id_field(), prop::option::of(enum_pick()), optional_id_field(), optional_id_field()),
    )
        .prop_map(
            |(
                (customer_id, command_id, expected_version, occurred_at),
                actor,
                (team, channel, correlation_id, causation_id),
            )| v1::CommandHeader {
                customer_id,
                command_id,
                expected_version,
                occurred_at,
                actor: actor.map(|(kind, id)| v1::Actor { kind: kind.number(4), id }),
                team,
                channel: channel.map_or(0, |channel| channel.number(6)),
                correlation_id,
                causation_id,
            },
        )
        .boxed()
}

// --- structured commands of every kind ---

/// Number of `BatchCommand` kinds; [`Raw::kind`] `== KINDS` is a batch item with no command.
const KINDS: usize = 27;

/// What one command is built from: `kind` picks the request, the rest fill its fields in order.
#[derive(Debug, Clone)]
struct Raw {
    kind: usize,
    header: Option<v1::CommandHeader>,
    ids: [String; 3],
    optional_id: String,
    texts: [String; 2],
    enums: [EnumPick; 4],
    instants: [Option<prost_types::Timestamp>; 2],
    grace: Option<prost_types::Duration>,
    amount: Option<v1::Money>,
    related: Option<v1::RelatedRef>,
    contacts: Vec<v1::ContactPoint>,
    changes: Option<v1::ProfileChanges>,
    counts: [u32; 2],
    reach: u64,
    flag: bool,
}

fn small_number() -> BoxedStrategy<u32> {
    prop_oneof![
        6 => 0..=1000u32,
        1 => prop_oneof![Just(255u32), Just(256), Just(65_535), Just(65_536), Just(u32::MAX), any::<u32>()],
    ]
    .boxed()
}

fn raw() -> BoxedStrategy<Raw> {
    (
        (0..=KINDS, prop::option::weighted(0.95, header())),
        (prop::array::uniform3(id_field()), optional_id_field(), prop::array::uniform2(text_field())),
        (
            prop::array::uniform4(enum_pick()),
            prop::option::weighted(0.95, timestamp()),
            prop::option::of(timestamp()),
            prop::option::of(duration()),
        ),
        (prop::option::weighted(0.95, money()), prop::option::weighted(0.7, related_ref()), contact_points()),
        (prop::option::weighted(0.95, profile_changes()), prop::array::uniform2(small_number())),
        (any::<u64>(), any::<bool>()),
    )
        .prop_map(
            |(
                (kind, header),
                (ids, optional_id, texts),
                (enums, due, other, grace),
                (amount, related, contacts),
                (changes, counts),
                (reach, flag),
            )| Raw {
                kind,
                header,
                ids,
                optional_id,
                texts,
                enums,
                instants: [due, other],
                grace,
                amount,
                related,
                contacts,
                changes,
                counts,
                reach,
                flag,
            },
        )
        .boxed()
}

impl Raw {
    fn id(&self, index: usize) -> String {
        self.ids[index].clone()
    }
    fn text(&self, index: usize) -> String {
        self.texts[index].clone()
    }
    fn pick(&self, index: usize, max: i32) -> i32 {
        self.enums[index].number(max)
    }

    /// The batch item of kind `kind`.
    fn command(&self) -> v1::BatchCommand {
        use v1::batch_command::Command as Wire;
        let header = self.header.clone();
        let [due, other] = self.instants;
        let command = match self.kind {
            0 => Wire::RegisterCustomer(v1::RegisterCustomerRequest {
                header,
                name: self.text(0),
                contact_points: self.contacts.clone(),
                locale: self.id(0),
                timezone: self.text(1),
                segment: self.id(1),
                source: self.id(2),
                tier: self.pick(0, 4),
            }),
            1 => Wire::UpdateProfile(v1::UpdateProfileRequest { header, changes: self.changes.clone() }),
            2 => Wire::ChangeConsent(v1::ChangeConsentRequest {
                header,
                purpose: self.id(0),
                granted: self.flag,
            }),
            3 => Wire::ChangeTier(v1::ChangeTierRequest { header, tier: self.pick(0, 4) }),
            4 => Wire::RecordChurn(v1::RecordChurnRequest { header, reason: self.pick(0, 6) }),
            5 => Wire::ReactivateCustomer(v1::ReactivateCustomerRequest { header }),
            6 => Wire::EraseCustomer(v1::EraseCustomerRequest { header }),
            7 => Wire::RecordInteraction(v1::RecordInteractionRequest {
                header,
                interaction_id: self.id(0),
                channel: self.pick(0, 6),
                direction: self.pick(1, 2),
                kind: self.pick(2, 6),
                agent_id: self.optional_id.clone(),
                wait_secs: self.counts[0],
                handle_secs: self.counts[1],
                sentiment: self.pick(3, 4),
                summary: self.text(0),
            }),
            8 => Wire::CaptureSocialMention(v1::CaptureSocialMentionRequest {
                header,
                platform: self.id(0),
                sentiment: self.pick(0, 4),
                reach: self.reach,
            }),
            9 => Wire::OpenComplaint(v1::OpenComplaintRequest {
                header,
                complaint_id: self.id(0),
                category: self.pick(0, 7),
                severity: self.pick(1, 4),
                priority: self.pick(2, 4),
                channel: self.pick(3, 6),
                description: self.text(0),
            }),
            10 => {
                Wire::RespondToComplaint(v1::RespondToComplaintRequest { header, complaint_id: self.id(0) })
            }
            11 => Wire::EscalateComplaint(v1::EscalateComplaintRequest {
                header,
                complaint_id: self.id(0),
                to_team: self.optional_id.clone(),
                reason: self.text(0),
            }),
            12 => Wire::ResolveComplaint(v1::ResolveComplaintRequest {
                header,
                complaint_id: self.id(0),
                outcome: self.pick(0, 4),
            }),
            13 => Wire::ReopenComplaint(v1::ReopenComplaintRequest {
                header,
                complaint_id: self.id(0),
                reason: self.text(0),
            }),
            14 => Wire::BreachSla(v1::BreachSlaRequest {
                header,
                complaint_id: self.id(0),
                target: self.pick(0, 2),
                due_at: due,
            }),
            15 => Wire::MakePromise(v1::MakePromiseRequest {
                header,
                promise_id: self.id(0),
                kind: self.pick(0, 10),
                description: self.text(0),
                made_by: self.id(1),
                due_at: due,
                grace: self.grace,
                related_ref: self.related.clone(),
            }),
            16 => Wire::RenegotiatePromise(v1::RenegotiatePromiseRequest {
                header,
                promise_id: self.id(0),
                new_due_at: due,
                customer_consented: self.flag,
            }),
            17 => Wire::KeepPromise(v1::KeepPromiseRequest {
                header,
                promise_id: self.id(0),
                kept_at: other,
                evidence: self.text(0),
            }),
            18 => Wire::PartiallyKeepPromise(v1::PartiallyKeepPromiseRequest {
                header,
                promise_id: self.id(0),
                fraction_permille: self.counts[0],
                evidence: self.text(0),
            }),
            19 => Wire::ReportBrokenPromise(v1::ReportBrokenPromiseRequest {
                header,
                promise_id: self.id(0),
                detection: self.pick(0, 3),
                reason: self.text(0),
            }),
            20 => Wire::ExpirePromise(v1::ExpirePromiseRequest { header, promise_id: self.id(0) }),
            21 => Wire::CancelPromise(v1::CancelPromiseRequest {
                header,
                promise_id: self.id(0),
                by: self.pick(0, 2),
                customer_consented: self.flag,
                reason: self.text(0),
            }),
            22 => Wire::IssueApology(v1::IssueApologyRequest { header, related_ref: self.related.clone() }),
            23 => Wire::GrantCompensation(v1::GrantCompensationRequest {
                header,
                related_ref: self.related.clone(),
                kind: self.pick(0, 6),
                amount: self.amount.clone(),
            }),
            24 => Wire::AnswerSurvey(v1::AnswerSurveyRequest {
                header,
                survey_id: self.id(0),
                kind: self.pick(0, 3),
                score: self.counts[0] % 12,
                comment: self.text(0),
                related_ref: self.related.clone(),
            }),
            25 => Wire::RecordPurchase(v1::RecordPurchaseRequest {
                header,
                order_id: self.id(0),
                amount: self.amount.clone(),
            }),
            26 => Wire::IssueRefund(v1::IssueRefundRequest {
                header,
                order_id: self.id(0),
                amount: self.amount.clone(),
                reason: self.text(0),
            }),
            _ => return v1::BatchCommand { command: None },
        };
        v1::BatchCommand { command: Some(command) }
    }
}

// --- what every answer must satisfy ---

/// How conversions answered, for the summary line (so a generator that stops reaching
/// acceptance shows).
static COMMANDS_ACCEPTED: AtomicU64 = AtomicU64::new(0);
static COMMANDS_REFUSED: AtomicU64 = AtomicU64::new(0);
static ENVELOPES_ACCEPTED: AtomicU64 = AtomicU64::new(0);
static ENVELOPES_REFUSED: AtomicU64 = AtomicU64::new(0);

fn outcomes() -> String {
    let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    format!(
        "commands accepted {} / refused {}, envelopes accepted {} / refused {}",
        count(&COMMANDS_ACCEPTED),
        count(&COMMANDS_REFUSED),
        count(&ENVELOPES_ACCEPTED),
        count(&ENVELOPES_REFUSED)
    )
}

/// The documented identifier rule, restated independently of the domain's code.
fn is_valid_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

/// Every field path a command refusal may name (indexes written `[]`).
const COMMAND_FIELDS: &[&str] = &[
    "command",
    "header",
    "header.customer_id",
    "header.command_id",
    "header.occurred_at",
    "header.actor",
    "header.actor.kind",
    "header.actor.id",
    "header.team",
    "header.channel",
    "header.correlation_id",
    "header.causation_id",
    "name",
    "contact_points[].kind",
    "contact_points[].value",
    "locale",
    "timezone",
    "segment",
    "source",
    "tier",
    "changes",
    "changes.name",
    "changes.contact_points",
    "changes.contact_points[].kind",
    "changes.contact_points[].value",
    "changes.locale",
    "changes.timezone",
    "changes.segment",
    "purpose",
    "reason",
    "interaction_id",
    "channel",
    "direction",
    "kind",
    "agent_id",
    "sentiment",
    "summary",
    "platform",
    "complaint_id",
    "category",
    "severity",
    "priority",
    "description",
    "to_team",
    "outcome",
    "target",
    "due_at",
    "promise_id",
    "made_by",
    "grace",
    "related_ref",
    "related_ref.promise_id",
    "related_ref.complaint_id",
    "related_ref.order_id",
    "related_ref.interaction_id",
    "new_due_at",
    "kept_at",
    "evidence",
    "fraction_permille",
    "detection",
    "by",
    "amount",
    "amount.currency",
    "amount.amount_minor",
    "survey_id",
    "score",
    "comment",
    "order_id",
];

/// `contact_points[2].kind` → `contact_points[].kind`.
fn without_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// A refusal names a field, and its message starts with it.
fn names_a_field(error: &ConvertError) -> Result<String, TestCaseError> {
    let message = error.to_string();
    let Some(field) = error.field() else {
        return Err(TestCaseError::fail(format!("a refusal that names no field: {message:?} ({error:?})")));
    };
    prop_assert!(!field.is_empty(), "an empty field path: {message:?}");
    prop_assert!(message.starts_with(&format!("{field}: ")), "{message:?} does not start with {field:?}");
    Ok(without_indexes(field))
}

fn texts(command: &Command) -> Vec<(&Text, usize)> {
    let (short, long) = (SHORT_TEXT_MAX, LONG_TEXT_MAX);
    match command {
        Command::RegisterCustomer { name, contact_points, timezone, .. } => {
            let mut texts = vec![(name, short), (timezone, short)];
            texts.extend(contact_points.iter().map(|point| (&point.value, short)));
            texts
        }
        Command::UpdateProfile { changes } => {
            let mut texts: Vec<_> =
                [&changes.name, &changes.timezone].into_iter().flatten().map(|text| (text, short)).collect();
            texts.extend(changes.contact_points.iter().flatten().map(|point| (&point.value, short)));
            texts
        }
        Command::RecordInteraction { summary, .. } => vec![(summary, long)],
        Command::OpenComplaint { description, .. } | Command::MakePromise { description, .. } => {
            vec![(description, long)]
        }
        Command::AnswerSurvey { comment, .. } => vec![(comment, long)],
        Command::EscalateComplaint { reason, .. }
        | Command::ReopenComplaint { reason, .. }
        | Command::ReportBrokenPromise { reason, .. }
        | Command::CancelPromise { reason, .. }
        | Command::IssueRefund { reason, .. } => vec![(reason, short)],
        Command::KeepPromise { evidence, .. } | Command::PartiallyKeepPromise { evidence, .. } => {
            vec![(evidence, short)]
        }
        _ => Vec::new(),
    }
}

fn amounts(command: &Command) -> Option<&Money> {
    match command {
        Command::GrantCompensation { amount, .. }
        | Command::RecordPurchase { amount, .. }
        | Command::IssueRefund { amount, .. } => Some(amount),
        _ => None,
    }
}

fn instants(request: &CommandRequest) -> Vec<Timestamp> {
    let mut instants: Vec<_> = request.occurred_at.into_iter().collect();
    match &request.command {
        Command::BreachSla { due_at, .. } | Command::MakePromise { due_at, .. } => instants.push(*due_at),
        Command::RenegotiatePromise { new_due_at, .. } => instants.push(*new_due_at),
        Command::KeepPromise { kept_at, .. } => instants.extend(*kept_at),
        _ => {}
    }
    instants
}

fn valid_text(text: &Text, max: usize) -> bool {
    let text = text.as_str();
    text.len() <= max && !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// Converts `wire` and checks the answer against the documented rules.
fn check_command(wire: v1::BatchCommand) -> Result<(), TestCaseError> {
    let header = wire.command.as_ref().map(header_of);
    let result = CommandRequest::try_from(wire);
    let request = match result {
        Err(error) => {
            COMMANDS_REFUSED.fetch_add(1, Ordering::Relaxed);
            let field = names_a_field(&error)?;
            prop_assert!(COMMAND_FIELDS.contains(&field.as_str()), "{error} names a field the API lacks");
            match header {
                None => prop_assert_eq!(field, "command"),
                Some(None) => prop_assert_eq!(field, "header"),
                Some(Some(header)) if !is_valid_id(&header.customer_id) => {
                    prop_assert_eq!(field, "header.customer_id", "{}", error)
                }
                Some(Some(header)) if !is_valid_id(&header.command_id) => {
                    prop_assert_eq!(field, "header.command_id", "{}", error)
                }
                Some(Some(_)) => {}
            }
            return Ok(());
        }
        Ok(request) => request,
    };
    // Accepted: the header's ids kept the rule, the values their limits.
    COMMANDS_ACCEPTED.fetch_add(1, Ordering::Relaxed);
    let header = header.flatten().expect("an accepted command has a header");
    prop_assert!(is_valid_id(&header.customer_id), "accepted customer id {:?}", header.customer_id);
    prop_assert!(is_valid_id(&header.command_id), "accepted command id {:?}", header.command_id);
    prop_assert_eq!(request.customer_id.as_str(), header.customer_id.as_str());
    prop_assert_eq!(request.command_id.as_str(), header.command_id.as_str());
    prop_assert!(is_valid_id(request.actor.id.as_str()));
    for (text, max) in texts(&request.command) {
        prop_assert!(
            valid_text(text, max),
            "{}: accepted a text of {} bytes over {max}",
            request.command.name(),
            text.as_str().len()
        );
    }
    if let Some(money) = amounts(&request.command) {
        prop_assert!(
            (1..=MAX_AMOUNT_MINOR).contains(&money.amount_minor),
            "accepted amount {}",
            money.amount_minor
        );
        let code = money.currency.as_str();
        prop_assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()), "currency {code:?}");
    }
    for instant in instants(&request) {
        prop_assert!((Timestamp::MIN..=Timestamp::MAX).contains(&instant), "accepted instant {instant:?}");
    }
    // What was accepted goes back to the wire and converts to the same request.
    let again = v1::BatchCommand::from(&request);
    let decoded = v1::BatchCommand::decode(again.encode_to_vec().as_slice()).unwrap();
    prop_assert_eq!(CommandRequest::try_from(decoded).ok(), Some(request));
    Ok(())
}

fn header_of(command: &v1::batch_command::Command) -> Option<v1::CommandHeader> {
    use v1::batch_command::Command as Wire;
    match command {
        Wire::RegisterCustomer(r) => r.header.clone(),
        Wire::UpdateProfile(r) => r.header.clone(),
        Wire::ChangeConsent(r) => r.header.clone(),
        Wire::ChangeTier(r) => r.header.clone(),
        Wire::RecordChurn(r) => r.header.clone(),
        Wire::ReactivateCustomer(r) => r.header.clone(),
        Wire::EraseCustomer(r) => r.header.clone(),
        Wire::RecordInteraction(r) => r.header.clone(),
        Wire::CaptureSocialMention(r) => r.header.clone(),
        Wire::OpenComplaint(r) => r.header.clone(),
        Wire::RespondToComplaint(r) => r.header.clone(),
        Wire::EscalateComplaint(r) => r.header.clone(),
        Wire::ResolveComplaint(r) => r.header.clone(),
        Wire::ReopenComplaint(r) => r.header.clone(),
        Wire::BreachSla(r) => r.header.clone(),
        Wire::MakePromise(r) => r.header.clone(),
        Wire::RenegotiatePromise(r) => r.header.clone(),
        Wire::KeepPromise(r) => r.header.clone(),
        Wire::PartiallyKeepPromise(r) => r.header.clone(),
        Wire::ReportBrokenPromise(r) => r.header.clone(),
        Wire::ExpirePromise(r) => r.header.clone(),
        Wire::CancelPromise(r) => r.header.clone(),
        Wire::IssueApology(r) => r.header.clone(),
        Wire::GrantCompensation(r) => r.header.clone(),
        Wire::AnswerSurvey(r) => r.header.clone(),
        Wire::RecordPurchase(r) => r.header.clone(),
        Wire::IssueRefund(r) => r.header.clone(),
    }
}

/// Every top-level field an envelope refusal may name; payload fields are `<event_type>.<field>`.
const ENVELOPE_FIELDS: &[&str] = &[
    "event_id",
    "customer_id",
    "position",
    "event_type",
    "schema_version",
    "occurred_at",
    "recorded_at",
    "actor",
    "team",
    "channel",
    "correlation_id",
    "causation_id",
    "command_id",
    "payload",
];

/// Converts `wire` to a recorded event and checks the answer.
fn check_envelope(wire: v1::EventEnvelope) -> Result<Option<RecordedEvent>, TestCaseError> {
    match RecordedEvent::try_from(wire.clone()) {
        Err(error) => {
            ENVELOPES_REFUSED.fetch_add(1, Ordering::Relaxed);
            let field = names_a_field(&error)?;
            let root = field.split('.').next().unwrap_or_default();
            prop_assert!(
                ENVELOPE_FIELDS.contains(&root) || EVENT_TYPES.contains(&root),
                "{error} names a field the envelope lacks"
            );
            // The event id comes first, then the customer id.
            if uuid::Uuid::parse_str(&wire.event_id).is_ok() && !is_valid_id(&wire.customer_id) {
                prop_assert_eq!(field, "customer_id", "{}", error);
            }
            Ok(None)
        }
        Ok(event) => {
            ENVELOPES_ACCEPTED.fetch_add(1, Ordering::Relaxed);
            prop_assert!(is_valid_id(&wire.customer_id) && is_valid_id(&wire.command_id));
            prop_assert!((Timestamp::MIN..=Timestamp::MAX).contains(&event.recorded_at));
            prop_assert!((Timestamp::MIN..=Timestamp::MAX).contains(&event.metadata.occurred_at));
            prop_assert_eq!(event.event_type(), wire.event_type.as_str());
            // The same event goes out and comes back unchanged.
            let again = envelope(&event, Pii::Include);
            let decoded = v1::EventEnvelope::decode(again.encode_to_vec().as_slice()).unwrap();
            prop_assert_eq!(RecordedEvent::try_from(decoded).ok(), Some(event.clone()));
            Ok(Some(event))
        }
    }
}

// --- byte edits (a subset of those in `crates/log/tests/fuzz_decode.rs`) ---

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
    Insert {
        at: Index,
        bytes: Bytes,
    },
    Remove {
        at: Index,
        len: usize,
    },
    /// These bytes up to `at`, then the donor's from `from`.
    Splice {
        at: Index,
        from: Index,
    },
    /// A varint of `u64::MAX` or an unterminated one: absurd lengths, tags and numbers.
    HugeVarint {
        at: Index,
        unterminated: bool,
    },
}

fn mutation() -> BoxedStrategy<Mutation> {
    let some_bytes = prop::collection::vec(any::<u8>(), 1..24).prop_map(Bytes);
    prop_oneof![
        4 => (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::FlipBits { at, mask }),
        2 => (any::<Index>(), prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()])
            .prop_map(|(at, value)| Mutation::SetByte { at, value }),
        2 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<Index>(), some_bytes).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<Index>(), 1..16usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(at, from)| Mutation::Splice { at, from }),
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
        Mutation::Insert { at, bytes: extra } => {
            let at = index(at, len + 1);
            bytes.splice(at..at, extra.0.iter().copied());
        }
        Mutation::Remove { at, len: count } => {
            let at = index(at, len);
            bytes.drain(at..(at + count).min(len));
        }
        Mutation::Splice { at, from } => {
            bytes.truncate(index(at, len + 1));
            bytes.extend_from_slice(&donor[index(from, donor.len() + 1)..]);
        }
        Mutation::HugeVarint { at, unterminated } => {
            let at = index(at, len + 1);
            let varint: &[u8] = if *unterminated {
                &[0xff; 11]
            } else {
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
            };
            let end = (at + varint.len()).min(len);
            bytes.splice(at..end, varint.iter().copied());
        }
    }
}

fn edited(bytes: &[u8], donor: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    mutations.iter().for_each(|mutation| apply(&mut bytes, donor, mutation));
    bytes
}

// --- valid events of every type (as in `crates/log/tests/golden.rs`) ---

fn text(value: &str) -> Text {
    Text::new("text", value, LONG_TEXT_MAX).unwrap()
}
fn ts(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis_clamped(millis)
}
fn label(value: &str) -> Label {
    Label::new(value).unwrap()
}
fn eur(amount_minor: i64) -> Money {
    Money { amount_minor, currency: Currency::new("currency", "EUR").unwrap() }
}

fn every_event() -> Vec<Event> {
    let promise = PromiseId::new("p-1").unwrap();
    let complaint = ComplaintId::new("k-1").unwrap();
    let order = OrderId::new("o-1").unwrap();
    vec![
        Event::CustomerRegistered {
            name: text("Ada Lovelace"),
            contact_points: vec![ContactPoint { kind: ContactKind::Email, value: text("ada@example.com") }],
            locale: label("en-GB"),
            timezone: text("Europe/London"),
            segment: label("smb"),
            source: label("web"),
            tier: Tier::Standard,
        },
        Event::CustomerProfileUpdated {
            changes: ProfileChanges {
                name: Some(text("Ada King")),
                contact_points: Some(Vec::new()),
                segment: Some(label("enterprise")),
                ..Default::default()
            },
        },
        Event::ConsentChanged { purpose: label("marketing"), granted: true },
        Event::CustomerTierChanged { from: Tier::Standard, to: Tier::Vip },
        Event::CustomerChurned { reason: ChurnReason::Service },
        Event::CustomerReactivated {},
        Event::CustomerErased {},
        Event::InteractionRecorded {
            interaction_id: InteractionId::new("i-1").unwrap(),
            channel: Channel::Phone,
            direction: Direction::Inbound,
            kind: InteractionKind::Complaint,
            agent_id: Some(ActorId::new("agent-7").unwrap()),
            wait_secs: 95,
            handle_secs: 410,
            sentiment: Sentiment::Angry,
            summary: text("parcel late again"),
        },
        Event::SocialMentionCaptured {
            platform: label("mastodon"),
            sentiment: Sentiment::Negative,
            reach: 12_000,
        },
        Event::ComplaintOpened {
            complaint_id: complaint.clone(),
            category: ComplaintCategory::BrokenPromise,
            severity: Severity::Major,
            priority: Priority::High,
            channel: Channel::Email,
            description: text("promised callback never came"),
        },
        Event::ComplaintResponded { complaint_id: complaint.clone(), first: true },
        Event::ComplaintEscalated {
            complaint_id: complaint.clone(),
            to_team: Some(TeamId::new("tier-2").unwrap()),
            reason: text("needs a refund decision"),
        },
        Event::ComplaintResolved {
            complaint_id: complaint.clone(),
            outcome: ResolutionOutcome::PartiallyResolved,
        },
        Event::ComplaintReopened { complaint_id: complaint.clone(), reason: text("refund missing") },
        Event::SlaBreached {
            complaint_id: complaint.clone(),
            target: SlaTarget::Resolution,
            due_at: ts(1_700_086_400_000),
            detected_at: ts(1_700_086_460_000),
        },
        Event::PromiseMade {
            promise_id: promise.clone(),
            kind: PromiseKind::Callback,
            description: text("call back tomorrow"),
            made_by: ActorId::new("agent-7").unwrap(),
            due_at: ts(1_700_086_400_000),
            grace: Span::from_secs(900),
            related_ref: Some(RelatedRef::Complaint(complaint.clone())),
        },
        Event::PromiseRenegotiated {
            promise_id: promise.clone(),
            previous_due_at: ts(1_700_086_400_000),
            new_due_at: ts(1_700_172_800_000),
            customer_consented: false,
        },
        Event::PromiseKept {
            promise_id: promise.clone(),
            kept_at: ts(1_700_090_000_000),
            evidence: text("call log"),
        },
        Event::PromisePartiallyKept {
            promise_id: promise.clone(),
            fraction_permille: 600,
            evidence: text("3 of 5"),
        },
        Event::PromiseBroken {
            promise_id: promise.clone(),
            detection: BreakDetection::Deadline,
            due_at: ts(1_700_086_400_000),
            detected_at: ts(1_700_087_400_000),
            reason: text(""),
        },
        Event::PromiseCancelled {
            promise_id: promise.clone(),
            by: CancelledBy::Company,
            customer_consented: false,
            reason: text("stock gone"),
        },
        Event::ApologyIssued { related_ref: RelatedRef::Promise(promise.clone()) },
        Event::CompensationGranted {
            related_ref: RelatedRef::Promise(promise),
            kind: CompensationKind::Credit,
            amount: eur(1_500),
        },
        Event::SurveyAnswered {
            survey_id: SurveyId::new("s-1").unwrap(),
            kind: SurveyKind::Nps,
            score: 3,
            comment: text("slow"),
            related_ref: Some(RelatedRef::Order(order.clone())),
        },
        Event::PurchaseRecorded { order_id: order.clone(), amount: eur(12_999) },
        Event::RefundIssued { order_id: order, amount: eur(2_000), reason: text("damaged") },
    ]
}

fn recorded(index: usize) -> RecordedEvent {
    let event = every_event().swap_remove(index);
    assert_eq!(event.event_type(), EVENT_TYPES[index], "add the new event type to every_event()");
    RecordedEvent {
        event_id: EventId(uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + index as u128)),
        customer_id: CustomerId::new("cust-42").unwrap(),
        stream_version: index as u64 + 1,
        position: Position { partition: 3, offset: 1000 + index as u64 },
        recorded_at: ts(1_700_000_000_123),
        command_id: CommandId::new(format!("cmd-{index}")).unwrap(),
        metadata: EventMetadata {
            occurred_at: ts(1_700_000_000_000),
            actor: Actor { kind: ActorKind::Agent, id: ActorId::new("agent-7").unwrap() },
            team: Some(TeamId::new("support").unwrap()),
            channel: Some(Channel::Phone),
            correlation_id: Some(label("corr-1")),
            causation_id: None,
        },
        event,
    }
}

/// One hostile change to an envelope's header fields.
#[derive(Debug, Clone)]
enum EnvelopeEdit {
    EventId(String),
    CustomerId(String),
    StreamVersion(u64),
    Position(Option<(u32, u64)>),
    EventType(String),
    SchemaVersion(u32),
    OccurredAt(Option<prost_types::Timestamp>),
    RecordedAt(Option<prost_types::Timestamp>),
    Actor(Option<(EnumPick, String)>),
    Team(String),
    Channel(EnumPick),
    CorrelationId(String),
    CausationId(String),
    CommandId(String),
    NoPayload,
}

fn envelope_edit() -> BoxedStrategy<EnvelopeEdit> {
    let event_id = prop_oneof![
        any::<u128>().prop_map(|id| uuid::Uuid::from_u128(id).to_string()),
        any::<u128>().prop_map(|id| uuid::Uuid::from_u128(id).simple().to_string()),
        hostile_string(),
    ];
    let event_type =
        prop_oneof![prop::sample::select(EVENT_TYPES.to_vec()).prop_map(String::from), hostile_string()];
    prop_oneof![
        event_id.prop_map(EnvelopeEdit::EventId),
        id_field().prop_map(EnvelopeEdit::CustomerId),
        any::<u64>().prop_map(EnvelopeEdit::StreamVersion),
        prop::option::weighted(0.9, (prop_oneof![0..=65_535u32, any::<u32>()], any::<u64>()))
            .prop_map(EnvelopeEdit::Position),
        event_type.prop_map(EnvelopeEdit::EventType),
        prop_oneof![Just(0u32), Just(2), any::<u32>()].prop_map(EnvelopeEdit::SchemaVersion),
        prop::option::weighted(0.9, timestamp()).prop_map(EnvelopeEdit::OccurredAt),
        prop::option::weighted(0.9, timestamp()).prop_map(EnvelopeEdit::RecordedAt),
        prop::option::weighted(0.9, (enum_pick(), id_field())).prop_map(EnvelopeEdit::Actor),
        optional_id_field().prop_map(EnvelopeEdit::Team),
        enum_pick().prop_map(EnvelopeEdit::Channel),
        optional_id_field().prop_map(EnvelopeEdit::CorrelationId),
        optional_id_field().prop_map(EnvelopeEdit::CausationId),
        id_field().prop_map(EnvelopeEdit::CommandId),
        Just(EnvelopeEdit::NoPayload),
    ]
    .boxed()
}

fn edit_envelope(wire: &mut v1::EventEnvelope, edit: &EnvelopeEdit) {
    match edit.clone() {
        EnvelopeEdit::EventId(id) => wire.event_id = id,
        EnvelopeEdit::CustomerId(id) => wire.customer_id = id,
        EnvelopeEdit::StreamVersion(version) => wire.stream_version = version,
        EnvelopeEdit::Position(position) => {
            wire.position = position.map(|(partition, offset)| v1::Position { partition, offset })
        }
        EnvelopeEdit::EventType(event_type) => wire.event_type = event_type,
        EnvelopeEdit::SchemaVersion(version) => wire.schema_version = version,
        EnvelopeEdit::OccurredAt(at) => wire.occurred_at = at,
        EnvelopeEdit::RecordedAt(at) => wire.recorded_at = at,
        EnvelopeEdit::Actor(actor) => {
            wire.actor = actor.map(|(kind, id)| v1::Actor { kind: kind.number(4), id })
        }
        EnvelopeEdit::Team(team) => wire.team = team,
        EnvelopeEdit::Channel(channel) => wire.channel = channel.number(6),
        EnvelopeEdit::CorrelationId(id) => wire.correlation_id = id,
        EnvelopeEdit::CausationId(id) => wire.causation_id = id,
        EnvelopeEdit::CommandId(id) => wire.command_id = id,
        EnvelopeEdit::NoPayload => wire.payload = None,
    }
}

// --- the targets ---

fn arbitrary_bytes_as_commands(runner: &mut TestRunner) -> Result<(), String> {
    let bytes = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..128),
        1 => prop::collection::vec(any::<u8>(), 0..1024),
    ];
    check(runner, bytes.prop_map(Bytes), |bytes| {
        if let Ok(wire) = v1::BatchCommand::decode(bytes.0.as_slice()) {
            check_command(wire)?;
        }
        Ok(())
    })
}

fn structured_commands(runner: &mut TestRunner) -> Result<(), String> {
    check(runner, raw(), |raw| check_command(raw.command()))
}

/// Encodings of structured commands, edited, then decoded as a peer's bytes would be.
fn edited_command_bytes(runner: &mut TestRunner) -> Result<(), String> {
    let strategy = (raw(), raw(), prop::collection::vec(mutation(), 1..4));
    check(runner, strategy, |(raw, donor, mutations)| {
        let bytes = edited(&raw.command().encode_to_vec(), &donor.command().encode_to_vec(), &mutations);
        if let Ok(wire) = v1::BatchCommand::decode(bytes.as_slice()) {
            check_command(wire)?;
        }
        Ok(())
    })
}

fn arbitrary_bytes_as_envelopes(runner: &mut TestRunner) -> Result<(), String> {
    let bytes = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..128),
        1 => prop::collection::vec(any::<u8>(), 0..1024),
    ];
    check(runner, bytes.prop_map(Bytes), |bytes| {
        if let Ok(wire) = v1::EventEnvelope::decode(bytes.0.as_slice()) {
            check_envelope(wire)?;
        }
        Ok(())
    })
}

/// Valid envelopes of every type with hostile header fields, their encodings edited.
fn edited_envelopes(runner: &mut TestRunner) -> Result<(), String> {
    let strategy = (
        0..EVENT_TYPES.len(),
        0..EVENT_TYPES.len(),
        any::<bool>(),
        prop::collection::vec(envelope_edit(), 0..3),
        prop_oneof![Just(Vec::new()), prop::collection::vec(mutation(), 1..4)],
    );
    check(runner, strategy, |(index, donor, redact, edits, mutations)| {
        let event = recorded(index);
        let pii = if redact { Pii::Redact } else { Pii::Include };
        let mut wire = envelope(&event, pii);
        // Unedited, an envelope with its personal data converts back exactly.
        if pii == Pii::Include {
            prop_assert_eq!(check_envelope(wire.clone())?, Some(event.clone()));
        }
        edits.iter().for_each(|edit| edit_envelope(&mut wire, edit));
        if mutations.is_empty() {
            check_envelope(wire)?;
        } else {
            let donor = envelope(&recorded(donor), Pii::Include).encode_to_vec();
            let bytes = edited(&wire.encode_to_vec(), &donor, &mutations);
            if let Ok(wire) = v1::EventEnvelope::decode(bytes.as_slice()) {
                check_envelope(wire)?;
            }
        }
        Ok(())
    })
}

fn targets() -> [Target; 5] {
    [
        Target { name: "arbitrary_bytes_as_commands", run: arbitrary_bytes_as_commands },
        Target { name: "structured_commands", run: structured_commands },
        Target { name: "edited_command_bytes", run: edited_command_bytes },
        Target { name: "arbitrary_bytes_as_envelopes", run: arbitrary_bytes_as_envelopes },
        Target { name: "edited_envelopes", run: edited_envelopes },
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

/// The structured generator reaches acceptance for every kind of command (else the checks on
/// accepted commands would be vacuous) and refusal too.
#[test]
fn structured_commands_are_often_accepted() {
    let mut runner = runner(FIXED_SEED, 1);
    let mut accepted = [0u32; KINDS];
    let mut total = 0u32;
    for _ in 0..2000 {
        let raw = raw().new_tree(&mut runner).unwrap().current();
        if CommandRequest::try_from(raw.command()).is_ok() {
            accepted[raw.kind] += 1;
        }
        total += 1;
    }
    let kinds_accepted = accepted.iter().filter(|count| **count > 0).count();
    assert_eq!(kinds_accepted, KINDS, "kinds never accepted: {accepted:?} of {total}");
    let accepted_total: u32 = accepted.iter().sum();
    assert!(accepted_total < total / 2, "only {} of {total} refused", total - accepted_total);
}
