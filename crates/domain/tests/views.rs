#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test
//! The borrowed views decode exactly what the owned types encode: for arbitrary recorded events
//! of every type (every optional field both set and unset), postcard bytes decoded as a
//! [`RecordedEventView`] and turned owned give back the event, and the view names the same type;
//! the hand-written [`ViewDecoder`] reads the same views as serde, from good and damaged bytes.

use covenant_domain::events::*;
use covenant_domain::ids::*;
use covenant_domain::values::{Currency, Money, Span, Text, Timestamp};
use covenant_domain::view_decoder::ViewDecoder;
use covenant_domain::views::{EventView, RecordedEventView};
use covenant_domain::{CommandId, CustomerId, EventId, EventMetadata, Position, RecordedEvent};
use proptest::prelude::*;
use serde::de::DeserializeOwned;

/// Any unit-only enum: postcard writes a unit variant as its index, so decoding small indexes
/// yields every variant (and the filter drops indexes past the last one).
fn variant<T: DeserializeOwned + std::fmt::Debug>() -> impl Strategy<Value = T> {
    (0u8..16).prop_filter_map("no such variant", |index| postcard::from_bytes(&[index]).ok())
}

fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[A-Za-z0-9._:@-]{1,24}", 1 => "[A-Za-z0-9._:@-]{25,128}"]
}

macro_rules! id {
    ($name:ident) => {
        id_text().prop_map(|value| $name::new(value).unwrap())
    };
}

fn text() -> impl Strategy<Value = Text> {
    "\\PC{0,60}".prop_map(|value| Text::new("text", value, 4096).unwrap())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0..=Timestamp::MAX.unix_millis()).prop_map(Timestamp::from_unix_millis_clamped)
}

fn money() -> impl Strategy<Value = Money> {
    (any::<i64>(), prop::sample::select(vec!["EUR", "USD", "JPY", "GBP"]))
        .prop_map(|(amount_minor, code)| Money { amount_minor, currency: Currency::new("c", code).unwrap() })
}

fn related() -> impl Strategy<Value = RelatedRef> {
    prop_oneof![
        id!(PromiseId).prop_map(RelatedRef::Promise),
        id!(ComplaintId).prop_map(RelatedRef::Complaint),
        id!(OrderId).prop_map(RelatedRef::Order),
        id!(InteractionId).prop_map(RelatedRef::Interaction),
    ]
}

fn contact_points() -> impl Strategy<Value = Vec<ContactPoint>> {
    prop::collection::vec((variant(), text()).prop_map(|(kind, value)| ContactPoint { kind, value }), 0..3)
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (text(), contact_points(), id!(Label), text(), id!(Label), id!(Label), variant()).prop_map(
            |(name, contact_points, locale, timezone, segment, source, tier)| Event::CustomerRegistered {
                name,
                contact_points,
                locale,
                timezone,
                segment,
                source,
                tier
            }
        ),
        (
            prop::option::of(text()),
            prop::option::of(contact_points()),
            prop::option::of(id!(Label)),
            prop::option::of(text()),
            prop::option::of(id!(Label))
        )
            .prop_map(|(name, contact_points, locale, timezone, segment)| {
                Event::CustomerProfileUpdated {
                    changes: ProfileChanges { name, contact_points, locale, timezone, segment },
                }
            }),
        (id!(Label), any::<bool>()).prop_map(|(purpose, granted)| Event::ConsentChanged { purpose, granted }),
        (variant(), variant()).prop_map(|(from, to)| Event::CustomerTierChanged { from, to }),
        variant().prop_map(|reason| Event::CustomerChurned { reason }),
        Just(Event::CustomerReactivated {}),
        Just(Event::CustomerErased {}),
        (
            id!(InteractionId),
            variant(),
            variant(),
            variant(),
            prop::option::of(id!(ActorId)),
            any::<u32>(),
            any::<u32>(),
            variant(),
            text()
        )
            .prop_map(
                |(
                    interaction_id,
                    channel,
                    direction,
                    kind,
                    agent_id,
                    wait_secs,
                    handle_secs,
                    sentiment,
                    summary,
                )| {
                    Event::InteractionRecorded {
                        interaction_id,
                        channel,
                        direction,
                        kind,
                        agent_id,
                        wait_secs,
                        handle_secs,
                        sentiment,
                        summary,
                    }
                }
            ),
        (id!(Label), variant(), any::<u64>()).prop_map(|(platform, sentiment, reach)| {
            Event::SocialMentionCaptured { platform, sentiment, reach }
        }),
        (id!(ComplaintId), variant(), variant(), variant(), variant(), text()).prop_map(
            |(complaint_id, category, severity, priority, channel, description)| Event::ComplaintOpened {
                complaint_id,
                category,
                severity,
                priority,
                channel,
                description
            }
        ),
        (id!(ComplaintId), any::<bool>())
            .prop_map(|(complaint_id, first)| Event::ComplaintResponded { complaint_id, first }),
        (id!(ComplaintId), prop::option::of(id!(TeamId)), text()).prop_map(
            |(complaint_id, to_team, reason)| Event::ComplaintEscalated { complaint_id, to_team, reason }
        ),
        (id!(ComplaintId), variant())
            .prop_map(|(complaint_id, outcome)| Event::ComplaintResolved { complaint_id, outcome }),
        (id!(ComplaintId), text())
            .prop_map(|(complaint_id, reason)| Event::ComplaintReopened { complaint_id, reason }),
        (id!(ComplaintId), variant(), timestamp(), timestamp()).prop_map(
            |(complaint_id, target, due_at, detected_at)| Event::SlaBreached {
                complaint_id,
                target,
                due_at,
                detected_at
            }
        ),
        (
            id!(PromiseId),
            variant(),
            text(),
            id!(ActorId),
            timestamp(),
            any::<i32>(),
            prop::option::of(related())
        )
            .prop_map(|(promise_id, kind, description, made_by, due_at, grace, related_ref)| {
                Event::PromiseMade {
                    promise_id,
                    kind,
                    description,
                    made_by,
                    due_at,
                    grace: Span::from_millis(i64::from(grace)),
                    related_ref,
                }
            }),
        (id!(PromiseId), timestamp(), timestamp(), any::<bool>()).prop_map(
            |(promise_id, previous_due_at, new_due_at, customer_consented)| Event::PromiseRenegotiated {
                promise_id,
                previous_due_at,
                new_due_at,
                customer_consented
            }
        ),
        (id!(PromiseId), timestamp(), text())
            .prop_map(|(promise_id, kept_at, evidence)| Event::PromiseKept { promise_id, kept_at, evidence }),
        (id!(PromiseId), 1u16..1000, text()).prop_map(|(promise_id, fraction_permille, evidence)| {
            Event::PromisePartiallyKept { promise_id, fraction_permille, evidence }
        }),
        (id!(PromiseId), variant(), timestamp(), timestamp(), text()).prop_map(
            |(promise_id, detection, due_at, detected_at, reason)| Event::PromiseBroken {
                promise_id,
                detection,
                due_at,
                detected_at,
                reason
            }
        ),
        (id!(PromiseId), variant(), any::<bool>(), text()).prop_map(
            |(promise_id, by, customer_consented, reason)| Event::PromiseCancelled {
                promise_id,
                by,
                customer_consented,
                reason
            }
        ),
        related().prop_map(|related_ref| Event::ApologyIssued { related_ref }),
        (related(), variant(), money()).prop_map(|(related_ref, kind, amount)| Event::CompensationGranted {
            related_ref,
            kind,
            amount
        }),
        (id!(SurveyId), variant(), any::<u8>(), text(), prop::option::of(related())).prop_map(
            |(survey_id, kind, score, comment, related_ref)| Event::SurveyAnswered {
                survey_id,
                kind,
                score,
                comment,
                related_ref
            }
        ),
        (id!(OrderId), money()).prop_map(|(order_id, amount)| Event::PurchaseRecorded { order_id, amount }),
        (id!(OrderId), money(), text()).prop_map(|(order_id, amount, reason)| Event::RefundIssued {
            order_id,
            amount,
            reason
        }),
    ]
}

fn metadata() -> impl Strategy<Value = EventMetadata> {
    (
        timestamp(),
        variant(),
        id!(ActorId),
        prop::option::of(id!(TeamId)),
        prop::option::of(variant()),
        prop::option::of(id!(Label)),
        prop::option::of(id!(Label)),
    )
        .prop_map(|(occurred_at, kind, id, team, channel, correlation_id, causation_id)| EventMetadata {
            occurred_at,
            actor: Actor { kind, id },
            team,
            channel,
            correlation_id,
            causation_id,
        })
}

fn recorded_event() -> impl Strategy<Value = RecordedEvent> {
    (
        any::<u128>(),
        id!(CustomerId),
        any::<u64>(),
        any::<u16>(),
        any::<u64>(),
        timestamp(),
        id!(CommandId),
        metadata(),
        event(),
    )
        .prop_map(
            |(
                id,
                customer_id,
                stream_version,
                partition,
                offset,
                recorded_at,
                command_id,
                metadata,
                event,
            )| {
                RecordedEvent {
                    event_id: EventId(uuid::Uuid::from_u128(id)),
                    customer_id,
                    stream_version,
                    position: Position { partition, offset },
                    recorded_at,
                    command_id,
                    metadata,
                    event,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_view_decodes_what_the_owned_event_encodes(recorded in recorded_event()) {
        let bytes = postcard::to_stdvec(&recorded).unwrap();
        let view: RecordedEventView<'_> = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(view.event_type(), recorded.event_type());
        prop_assert_eq!(view.customer_id, recorded.customer_id.as_str());
        prop_assert_eq!(view.to_owned().unwrap(), recorded);
        // The hand-written decoder reads the same view, and stops where postcard stops.
        let mut decoder = ViewDecoder::new(&bytes);
        prop_assert_eq!(decoder.recorded_event().unwrap(), view);
        prop_assert!(decoder.rest().is_empty());
    }

    /// Damaged bytes (truncated, one byte changed, trailing bytes): the hand-written decoder
    /// accepts exactly what postcard's serde decoding accepts, and reads the same view.
    #[test]
    fn the_view_decoder_agrees_with_serde_on_damaged_bytes(
        recorded in recorded_event(),
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        trailing in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let bytes = postcard::to_stdvec(&recorded).unwrap();
        let truncated = &bytes[..cut.index(bytes.len())];
        let mut changed = bytes.clone();
        changed[at.index(bytes.len())] = byte;
        let mut extended = bytes.clone();
        extended.extend_from_slice(&trailing);
        for damaged in [truncated, &changed[..], &extended[..]] {
            let by_serde = postcard::take_from_bytes::<RecordedEventView<'_>>(damaged).ok();
            let mut decoder = ViewDecoder::new(damaged);
            let by_hand = decoder.recorded_event().ok().map(|view| (view, decoder.rest()));
            prop_assert_eq!(by_hand, by_serde, "bytes {:?}", damaged);
            // The owned decode through the view accepts exactly what the owned serde decode
            // accepts, and reads the same event.
            let owned_by_hand = ViewDecoder::new(damaged).recorded_event().ok().and_then(|view| view.to_owned().ok());
            prop_assert_eq!(owned_by_hand, postcard::from_bytes::<RecordedEvent>(damaged).ok());
        }
    }

    #[test]
    fn an_event_view_decodes_every_variant(event in event()) {
        let bytes = postcard::to_stdvec(&event).unwrap();
        let view: EventView<'_> = postcard::from_bytes(&bytes).unwrap();
        let mut decoder = ViewDecoder::new(&bytes);
        let variant = decoder.variant().unwrap();
        prop_assert_eq!(&decoder.event(variant).unwrap(), &view);
        prop_assert_eq!(view.variant_index(), EVENT_TYPES.iter().position(|name| *name == event.event_type()).unwrap());
        prop_assert_eq!(view.to_owned().unwrap(), event);
    }

    /// Bytes that are not an event are an error for the view as for the owned decoder, never a
    /// panic; and whatever the view accepts and can make owned, the owned decoder reads the same.
    #[test]
    fn views_of_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(
            ViewDecoder::new(&bytes).recorded_event().ok(),
            postcard::from_bytes::<RecordedEventView<'_>>(&bytes).ok()
        );
        let owned_by_hand = ViewDecoder::new(&bytes).recorded_event().ok().and_then(|view| view.to_owned().ok());
        prop_assert_eq!(owned_by_hand, postcard::from_bytes::<RecordedEvent>(&bytes).ok());
    }
}

#[test]
fn the_strategy_reaches_every_event_type() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..5000 {
        seen.insert(event().new_tree(&mut runner).unwrap().current().event_type());
    }
    assert_eq!(seen.len(), EVENT_TYPES.len(), "{seen:?}");
}
