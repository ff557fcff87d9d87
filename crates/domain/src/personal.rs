//! The personal data inside events (DESIGN §7): names, contact points and free text. Every
//! field that `events.proto` marks "personal data" is here, and nothing else.
//!
//! The log stores an event with these fields emptied and keeps them apart, sealed with the
//! customer's data key: [`take_personal_data`] lifts them out (in a fixed order per event type),
//! [`restore_personal_data`] puts them back. An optional field that was set (a profile update's
//! name) stays set but empty, so the public event still says *that* it changed.

use serde::{Deserialize, Serialize};

use crate::events::{ContactPoint, Event};
use crate::values::Text;

/// The personal fields of one event, in the event type's fixed order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PersonalData {
    pub texts: Vec<Text>,
    pub contact_points: Vec<Vec<ContactPoint>>,
}

/// The stored personal data does not fit the event it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("personal data does not fit a {event_type} event ({texts} texts, {lists} contact lists)")]
pub struct PersonalDataMismatch {
    pub event_type: &'static str,
    pub texts: usize,
    pub lists: usize,
}

/// One personal field of an event.
enum Field<'a> {
    Text(&'a mut Text),
    OptionalText(&'a mut Option<Text>),
    Contacts(&'a mut Vec<ContactPoint>),
    OptionalContacts(&'a mut Option<Vec<ContactPoint>>),
}

/// Visits every personal field of `event`, in order.
fn personal_fields(event: &mut Event, visit: &mut dyn FnMut(Field<'_>)) {
    match event {
        Event::CustomerRegistered { name, contact_points, .. } => {
            visit(Field::Text(name));
            visit(Field::Contacts(contact_points));
        }
        Event::CustomerProfileUpdated { changes } => {
            visit(Field::OptionalText(&mut changes.name));
            visit(Field::OptionalContacts(&mut changes.contact_points));
        }
        Event::InteractionRecorded { summary: text, .. }
        | Event::ComplaintOpened { description: text, .. }
        | Event::ComplaintEscalated { reason: text, .. }
        | Event::ComplaintReopened { reason: text, .. }
        | Event::PromiseMade { description: text, .. }
        | Event::PromiseKept { evidence: text, .. }
        | Event::PromisePartiallyKept { evidence: text, .. }
        | Event::PromiseBroken { reason: text, .. }
        | Event::PromiseCancelled { reason: text, .. }
        | Event::SurveyAnswered { comment: text, .. }
        | Event::RefundIssued { reason: text, .. } => visit(Field::Text(text)),
        Event::ConsentChanged { .. }
        | Event::CustomerTierChanged { .. }
        | Event::CustomerChurned { .. }
        | Event::CustomerReactivated {}
        | Event::CustomerErased {}
        | Event::SocialMentionCaptured { .. }
        | Event::ComplaintResponded { .. }
        | Event::ComplaintResolved { .. }
        | Event::SlaBreached { .. }
        | Event::PromiseRenegotiated { .. }
        | Event::ApologyIssued { .. }
        | Event::CompensationGranted { .. }
        | Event::PurchaseRecorded { .. } => {}
    }
}

/// Empties `event`'s personal fields and returns what they held; `None` when they held nothing
/// (then nothing needs sealing).
pub fn take_personal_data(event: &mut Event) -> Option<PersonalData> {
    let mut data = PersonalData::default();
    let mut any = false;
    personal_fields(event, &mut |field| match field {
        Field::Text(text) => {
            let taken = std::mem::replace(text, Text::from_stored(""));
            any |= !taken.as_str().is_empty();
            data.texts.push(taken);
        }
        Field::OptionalText(text) => {
            let taken = text.as_mut().map(|text| std::mem::replace(text, Text::from_stored("")));
            any |= taken.as_ref().is_some_and(|text| !text.as_str().is_empty());
            data.texts.push(taken.unwrap_or_else(|| Text::from_stored("")));
        }
        Field::Contacts(list) => {
            let taken = std::mem::take(list);
            any |= !taken.is_empty();
            data.contact_points.push(taken);
        }
        Field::OptionalContacts(list) => {
            let taken = list.as_mut().map(std::mem::take);
            any |= taken.as_ref().is_some_and(|list| !list.is_empty());
            data.contact_points.push(taken.unwrap_or_default());
        }
    });
    any.then_some(data)
}

/// Puts personal data taken by [`take_personal_data`] back into `event` (emptied by it).
pub fn restore_personal_data(event: &mut Event, data: PersonalData) -> Result<(), PersonalDataMismatch> {
    let mismatch = |event: &Event, data: &PersonalData| PersonalDataMismatch {
        event_type: event.event_type(),
        texts: data.texts.len(),
        lists: data.contact_points.len(),
    };
    let (mut texts, mut lists) = (0usize, 0usize);
    personal_fields(event, &mut |field| match field {
        Field::Text(_) | Field::OptionalText(_) => texts += 1,
        Field::Contacts(_) | Field::OptionalContacts(_) => lists += 1,
    });
    if texts != data.texts.len() || lists != data.contact_points.len() {
        return Err(mismatch(event, &data));
    }
    let mut texts = data.texts.into_iter();
    let mut lists = data.contact_points.into_iter();
    personal_fields(event, &mut |field| match field {
        Field::Text(text) => *text = texts.next().unwrap_or_else(|| Text::from_stored("")),
        Field::OptionalText(text) => {
            let value = texts.next().unwrap_or_else(|| Text::from_stored(""));
            if let Some(text) = text {
                *text = value;
            }
        }
        Field::Contacts(list) => *list = lists.next().unwrap_or_default(),
        Field::OptionalContacts(list) => {
            let value = lists.next().unwrap_or_default();
            if let Some(list) = list {
                *list = value;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ContactKind, ProfileChanges};

    // Every event type is checked against the public stream's redaction in
    // `covenant-proto` (`sealing_takes_exactly_what_redaction_empties`); these are the edge cases.

    #[test]
    fn a_profile_update_keeps_saying_what_changed_and_unset_fields_stay_unset() {
        let original = Event::CustomerProfileUpdated {
            changes: ProfileChanges {
                name: Some(Text::from_stored("Ada Lovelace")),
                contact_points: None,
                ..ProfileChanges::default()
            },
        };
        let mut stripped = original.clone();
        let data = take_personal_data(&mut stripped).unwrap();
        let Event::CustomerProfileUpdated { changes } = &stripped else { unreachable!() };
        assert_eq!(changes.name.as_ref().map(Text::as_str), Some(""), "set, but empty");
        assert_eq!(changes.contact_points, None);
        let mut restored = stripped.clone();
        restore_personal_data(&mut restored, data).unwrap();
        assert_eq!(restored, original);
    }

    #[test]
    fn empty_personal_fields_need_no_sealing_and_a_wrong_shape_is_refused() {
        let mut registered = Event::CustomerRegistered {
            name: Text::from_stored(""),
            contact_points: vec![],
            locale: crate::ids::Label::new("en").unwrap(),
            timezone: Text::from_stored("UTC"),
            segment: crate::ids::Label::new("retail").unwrap(),
            source: crate::ids::Label::new("web").unwrap(),
            tier: crate::events::Tier::Standard,
        };
        assert_eq!(take_personal_data(&mut registered), None);
        let data = PersonalData {
            texts: vec![Text::from_stored("a")],
            contact_points: vec![vec![ContactPoint {
                kind: ContactKind::Email,
                value: Text::from_stored("a@b"),
            }]],
        };
        let mut restored = registered.clone();
        restore_personal_data(&mut restored, data.clone()).unwrap();
        let Event::CustomerRegistered { timezone, .. } = &restored else { unreachable!() };
        assert_eq!(timezone.as_str(), "UTC", "the time zone is not personal data");
        let mut other = Event::CustomerReactivated {};
        let mismatch = restore_personal_data(&mut other, data).unwrap_err();
        assert_eq!(mismatch.event_type, "customer_reactivated");
    }
}
