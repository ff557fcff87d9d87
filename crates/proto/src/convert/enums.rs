//! Every enum of the API, both ways: `*_to_wire(domain) -> i32` and
//! `*_from_wire(field, i32) -> Result<domain, ConvertError>`.
//!
//! The wire's `*_UNSPECIFIED` (0) means "absent": `*_from_wire` answers
//! [`ConvertError::Missing`], and callers whose domain field is an `Option` (only
//! `header.channel` and the envelope's `channel`) use [`optional_channel`] to get `None` instead.
//! A number the API does not define is [`ConvertError::UnknownEnum`].
//!
//! Domain and wire variants carry the same names; the matches are exhaustive on both sides, so a
//! variant added to either the proto or the domain fails to compile here until it is mapped.

use covenant_domain::events as domain;

use super::ConvertError;
use crate::v1;

macro_rules! wire_enum {
    ($name:ident: $to_wire:ident, $from_wire:ident { $($variant:ident),+ $(,)? }) => {
        #[doc = concat!("The wire number of a domain `", stringify!($name), "`.")]
        pub fn $to_wire(value: domain::$name) -> i32 {
            match value {
                $(domain::$name::$variant => i32::from(v1::$name::$variant),)+
            }
        }

        #[doc = concat!(
            "The domain `", stringify!($name), "` of a wire number: UNSPECIFIED is `Missing`, ",
            "an undefined number `UnknownEnum`, both naming `field`."
        )]
        pub fn $from_wire(field: &str, value: i32) -> Result<domain::$name, ConvertError> {
            match v1::$name::try_from(value) {
                $(Ok(v1::$name::$variant) => Ok(domain::$name::$variant),)+
                Ok(v1::$name::Unspecified) => Err(ConvertError::missing(field)),
                Err(_) => Err(ConvertError::UnknownEnum { field: field.to_owned(), value }),
            }
        }
    };
}

wire_enum!(ActorKind: actor_kind_to_wire, actor_kind_from_wire { Customer, Agent, System, Integration });
wire_enum!(Channel: channel_to_wire, channel_from_wire { Phone, Email, Chat, Social, InPerson, Web });
wire_enum!(Tier: tier_to_wire, tier_from_wire { Basic, Standard, Premium, Vip });
wire_enum!(ChurnReason: churn_reason_to_wire, churn_reason_from_wire {
    Service, Product, Price, Competitor, NoNeed, Other
});
wire_enum!(Direction: direction_to_wire, direction_from_wire { Inbound, Outbound });
wire_enum!(InteractionKind: interaction_kind_to_wire, interaction_kind_from_wire {
    Inquiry, Complaint, Compliment, Feedback, Sales, FollowUp
});
wire_enum!(Sentiment: sentiment_to_wire, sentiment_from_wire { Angry, Negative, Neutral, Positive });
wire_enum!(ComplaintCategory: complaint_category_to_wire, complaint_category_from_wire {
    BrokenPromise, ExpectationGap, Delay, Billing, Staff, Product, Other
});
wire_enum!(Severity: severity_to_wire, severity_from_wire { Minor, Moderate, Major, Critical });
wire_enum!(Priority: priority_to_wire, priority_from_wire { Low, Normal, High, Urgent });
wire_enum!(ResolutionOutcome: resolution_outcome_to_wire, resolution_outcome_from_wire {
    Resolved, PartiallyResolved, Unresolved, Withdrawn
});
wire_enum!(SlaTarget: sla_target_to_wire, sla_target_from_wire { FirstReply, Resolution });
wire_enum!(PromiseKind: promise_kind_to_wire, promise_kind_from_wire {
    Callback, Delivery, Refund, Fix, Info, Visit, Price, Compensation, AdvertisedClaim, Other
});
wire_enum!(BreakDetection: break_detection_to_wire, break_detection_from_wire {
    Deadline, CustomerReport, Audit
});
wire_enum!(CancelledBy: cancelled_by_to_wire, cancelled_by_from_wire { Company, Customer });
wire_enum!(CompensationKind: compensation_kind_to_wire, compensation_kind_from_wire {
    Refund, Credit, Gift, Discount, Replacement, Waiver
});
wire_enum!(SurveyKind: survey_kind_to_wire, survey_kind_from_wire { Nps, Csat, Ces });
wire_enum!(ContactKind: contact_kind_to_wire, contact_kind_from_wire { Email, Phone, Postal, Social });

/// An optional channel (command header, event envelope): UNSPECIFIED is `None`.
pub fn optional_channel(field: &str, value: i32) -> Result<Option<domain::Channel>, ConvertError> {
    if value == i32::from(v1::Channel::Unspecified) {
        Ok(None)
    } else {
        channel_from_wire(field, value).map(Some)
    }
}

/// The wire number of an optional channel: `None` is UNSPECIFIED.
pub fn optional_channel_to_wire(value: Option<domain::Channel>) -> i32 {
    value.map_or(i32::from(v1::Channel::Unspecified), channel_to_wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_is_missing_and_unknown_numbers_are_named() {
        for tier in [domain::Tier::Basic, domain::Tier::Standard, domain::Tier::Premium, domain::Tier::Vip] {
            assert_eq!(tier_from_wire("tier", tier_to_wire(tier)).unwrap(), tier);
        }
        assert!(matches!(tier_from_wire("tier", 0), Err(ConvertError::Missing { field }) if field == "tier"));
        assert!(matches!(
            tier_from_wire("tier", 99),
            Err(ConvertError::UnknownEnum { field, value: 99 }) if field == "tier"
        ));
        assert!(matches!(tier_from_wire("tier", -1), Err(ConvertError::UnknownEnum { value: -1, .. })));
        assert_eq!(optional_channel("header.channel", 0).unwrap(), None);
        assert_eq!(optional_channel_to_wire(None), 0);
        let web = optional_channel_to_wire(Some(domain::Channel::Web));
        assert_eq!(optional_channel("header.channel", web).unwrap(), Some(domain::Channel::Web));
        let error = optional_channel("header.channel", 42).unwrap_err();
        assert_eq!(error.to_string(), "header.channel: unknown enum value 42");
    }

    #[test]
    fn numbers_are_the_proto_numbers() {
        // Spot checks against events.proto / common.proto (the numbers are the wire contract).
        assert_eq!(channel_to_wire(domain::Channel::InPerson), 5);
        assert_eq!(promise_kind_to_wire(domain::PromiseKind::AdvertisedClaim), 9);
        assert_eq!(complaint_category_to_wire(domain::ComplaintCategory::Other), 7);
        assert_eq!(actor_kind_to_wire(domain::ActorKind::Integration), 4);
        assert_eq!(break_detection_to_wire(domain::BreakDetection::CustomerReport), 2);
    }
}
