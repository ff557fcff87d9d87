//! Covenant's wire types: the protobuf messages and gRPC services generated from `proto/`
//! (`covenant.v1`), and the conversions between them and the domain types.
//!
//! Conversions from the wire are `TryFrom` and name the missing or bad field; conversions to the
//! wire cannot fail.

pub mod convert;

/// The generated `covenant.v1` package.
#[allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("covenant.v1");
}

/// The encoded file descriptor set of `covenant.v1`, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/covenant_descriptor.bin"));

/// Calls `$callback! { method: RequestType, … }` with every single-command RPC of the `Ledger`
/// service (all but `AppendBatch`), each answered by an `AppendResponse`: implementations of
/// `v1::ledger_server::Ledger` list their methods once, from here.
#[macro_export]
macro_rules! with_ledger_command_rpcs {
    ($callback:ident) => {
        $callback! {
            register_customer: RegisterCustomerRequest,
            update_profile: UpdateProfileRequest,
            change_consent: ChangeConsentRequest,
            change_tier: ChangeTierRequest,
            record_churn: RecordChurnRequest,
            reactivate_customer: ReactivateCustomerRequest,
            erase_customer: EraseCustomerRequest,
            record_interaction: RecordInteractionRequest,
            capture_social_mention: CaptureSocialMentionRequest,
            open_complaint: OpenComplaintRequest,
            respond_to_complaint: RespondToComplaintRequest,
            escalate_complaint: EscalateComplaintRequest,
            resolve_complaint: ResolveComplaintRequest,
            reopen_complaint: ReopenComplaintRequest,
            breach_sla: BreachSlaRequest,
            make_promise: MakePromiseRequest,
            renegotiate_promise: RenegotiatePromiseRequest,
            keep_promise: KeepPromiseRequest,
            partially_keep_promise: PartiallyKeepPromiseRequest,
            report_broken_promise: ReportBrokenPromiseRequest,
            expire_promise: ExpirePromiseRequest,
            cancel_promise: CancelPromiseRequest,
            issue_apology: IssueApologyRequest,
            grant_compensation: GrantCompensationRequest,
            answer_survey: AnswerSurveyRequest,
            record_purchase: RecordPurchaseRequest,
            issue_refund: IssueRefundRequest,
        }
    };
}
