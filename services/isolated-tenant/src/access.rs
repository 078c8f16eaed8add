//! Who may call what (INV-9). The tenant has no users: every request under `/tenant/v1` must
//! carry a service token from a service it trusts, and that service must be allowed the
//! operation. The table is [`may_call`]; handlers state their operation in their signature by
//! taking a [`Permit`], so no handler can forget the check, and the check runs before the body
//! is even read.

use crate::audit::Context;
use crate::error::ApiError;
use auth::{ServiceCaller, ServiceVerifier};
use axum::extract::{FromRef, FromRequestParts};
use domain::ServiceName;
use http::request::Parts;
use std::fmt;
use std::marker::PhantomData;

/// Everything a caller can ask of the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Check that the token is accepted ("which service am I to the tenant?").
    Ping,
    /// Create or confirm a distribution group.
    ProvisionGroup,
    /// Remove a distribution group and its membership.
    DeprovisionGroup,
    /// Add one person to a group.
    AddMember,
    /// Remove one person from a group.
    RemoveMember,
    /// Ask whether one person is in a group.
    CheckMember,
    /// List the groups one person is in.
    GroupsOf,
    /// Remove one person from every group at once and delete their identity.
    Offboard,
    /// A group's member count, as a bucket.
    MemberCount,
    /// The API's OpenAPI document.
    ReadApiDoc,
    /// Apply a batch of adds and removes in one transaction (bulk jobs).
    ApplyBatch,
    /// File, approve or redeem a break-glass request, for the user whose own token comes
    /// along (INV-8).
    BreakGlass,
    /// The mail queue's counts (queued, delivered, dead letters, bad addresses), for
    /// operators.
    MailCounts,
    /// The newest dead letters (id, time, attempts, last reply code, recipients as a bucket),
    /// for operators.
    MailDeadLetters,
    /// Apply a label's entry rule to the groups under it, ending the memberships it now bars.
    ApplyRule,
    /// Whether a caller's token was voided by an offboarding.
    CheckToken,
    /// Provision, read, find and remove the users the IdP syncs (SCIM).
    Directory,
    /// Queue a notification from the closed set of templates (owners' digests, a requester's
    /// decision).
    Notify,
}

impl Operation {
    /// Every operation, in a stable order.
    pub const ALL: [Operation; 18] = [
        Self::Ping,
        Self::ProvisionGroup,
        Self::DeprovisionGroup,
        Self::AddMember,
        Self::RemoveMember,
        Self::CheckMember,
        Self::GroupsOf,
        Self::Offboard,
        Self::MemberCount,
        Self::ReadApiDoc,
        Self::ApplyBatch,
        Self::BreakGlass,
        Self::MailCounts,
        Self::MailDeadLetters,
        Self::ApplyRule,
        Self::CheckToken,
        Self::Directory,
        Self::Notify,
    ];

    /// The operation's name in refusals and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::ProvisionGroup => "provision-group",
            Self::DeprovisionGroup => "deprovision-group",
            Self::AddMember => "add-member",
            Self::RemoveMember => "remove-member",
            Self::CheckMember => "check-member",
            Self::GroupsOf => "groups-of",
            Self::Offboard => "offboard",
            Self::MemberCount => "member-count",
            Self::ReadApiDoc => "read-api-doc",
            Self::ApplyBatch => "apply-batch",
            Self::BreakGlass => "break-glass",
            Self::MailCounts => "mail-counts",
            Self::MailDeadLetters => "mail-dead-letters",
            Self::ApplyRule => "apply-rule",
            Self::CheckToken => "check-token",
            Self::Directory => "directory",
            Self::Notify => "notify",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `service` may perform `op`. Least privilege, one line per service:
///
/// - control-api owns the catalog and the directory's life cycle: it provisions and
///   deprovisions groups, shows owners a count bucket (INV-4), and offboards a person who left
///   (every membership at once), shows operators the mail queue's counts, and applies a
///   label's changed entry rule (which ends the memberships it bars, answering a count bucket
///   only). It never adds or
///   removes a single membership and never asks about one.
///   It also carries break-glass requests (INV-8) — never on its own authority: each call
///   forwards the acting user's own token, which the tenant verifies and whose role it checks
///   ([`crate::breakglass`]); membership-api and bulk-api cannot reach break-glass at all.
/// - membership-api acts for one person at a time: add, remove, "am I a member", "my groups"
///   (INV-2), and a person's own forget-me, which is an offboarding of the caller alone. It
///   alone asks for notifications about join requests (it holds them): the tenant writes the
///   words from a closed set of templates ([`crate::notify`]).
/// - bulk-api applies jobs through add, remove and batches of both (answered with counts by
///   outcome only), never a question about who is a member, so its reports cannot say
///   "already a member" per person (INV-3). Only bulk-api applies batches.
/// - the tenant itself is not a caller; nothing it does goes through its API.
///
/// Every public service may ask whether its own caller's token was voided by an offboarding.
/// Every trusted service may ping and read the API document.
pub fn may_call(service: ServiceName, op: Operation) -> bool {
    use Operation as O;
    use ServiceName as S;
    match service {
        S::ControlApi => matches!(
            op,
            O::Ping
                | O::ReadApiDoc
                | O::ProvisionGroup
                | O::DeprovisionGroup
                | O::MemberCount
                | O::Offboard
                | O::BreakGlass
                | O::MailCounts
                | O::MailDeadLetters
                | O::ApplyRule
                | O::CheckToken
                | O::Directory
        ),
        S::MembershipApi => matches!(
            op,
            O::Ping
                | O::ReadApiDoc
                | O::AddMember
                | O::RemoveMember
                | O::CheckMember
                | O::GroupsOf
                | O::CheckToken
                | O::Offboard
                | O::Notify
        ),
        S::BulkApi => matches!(
            op,
            O::Ping
                | O::ReadApiDoc
                | O::AddMember
                | O::RemoveMember
                | O::ApplyBatch
                | O::CheckToken
        ),
        S::IsolatedTenant => false,
    }
}

/// An operation named at the type level, so a handler's signature says what it does.
pub trait Op: Send + Sync + 'static {
    /// The operation.
    const OP: Operation;
}

/// Marker types for [`Permit`], one per [`Operation`].
pub mod op {
    use super::{Op, Operation};

    macro_rules! ops {
        ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
            $(
                $(#[$doc])*
                #[derive(Debug, Clone, Copy)]
                pub struct $name;
                impl Op for $name {
                    const OP: Operation = Operation::$name;
                }
            )*
        };
    }

    ops!(
        /// See [`Operation::Ping`].
        Ping,
        /// See [`Operation::ProvisionGroup`].
        ProvisionGroup,
        /// See [`Operation::DeprovisionGroup`].
        DeprovisionGroup,
        /// See [`Operation::AddMember`].
        AddMember,
        /// See [`Operation::RemoveMember`].
        RemoveMember,
        /// See [`Operation::CheckMember`].
        CheckMember,
        /// See [`Operation::GroupsOf`].
        GroupsOf,
        /// See [`Operation::Offboard`].
        Offboard,
        /// See [`Operation::MemberCount`].
        MemberCount,
        /// See [`Operation::ReadApiDoc`].
        ReadApiDoc,
        /// See [`Operation::ApplyBatch`].
        ApplyBatch,
        /// See [`Operation::BreakGlass`].
        BreakGlass,
        /// See [`Operation::MailCounts`].
        MailCounts,
        /// See [`Operation::MailDeadLetters`].
        MailDeadLetters,
        /// See [`Operation::ApplyRule`].
        ApplyRule,
        /// See [`Operation::CheckToken`].
        CheckToken,
        /// See [`Operation::Directory`].
        Directory,
        /// See [`Operation::Notify`].
        Notify,
    );
}

/// Proof that the request carries a valid service token from a service allowed to perform
/// `O`. Rejects with 401 (no or bad token) or 403 (a service not allowed this operation).
/// Carries the [`Context`] the events of the request record ([`Self::context`]).
#[derive(Debug, Clone)]
pub struct Permit<O: Op> {
    /// The authenticated service.
    pub caller: ServiceCaller,
    /// The caller and the request id, for the audit chain.
    context: Context,
    _op: PhantomData<O>,
}

impl<O: Op> Permit<O> {
    /// Who is calling, as the events this request appends record it: the verified service
    /// and the request's `x-request-id`.
    pub fn context(&self) -> &Context {
        &self.context
    }
}

impl<S, O> FromRequestParts<S> for Permit<O>
where
    ServiceVerifier: FromRef<S>,
    S: Send + Sync,
    O: Op,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = ServiceCaller::from_request_parts(parts, state).await?;
        if !may_call(caller.service, O::OP) {
            return Err(ApiError::Forbidden {
                service: caller.service,
                op: O::OP,
            });
        }
        let context = Context::request(&caller.service.to_string(), &parts.headers);
        Ok(Self {
            caller,
            context,
            _op: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out: a change to [`may_call`] must change this test too.
    #[test]
    fn may_call_matches_the_table_for_every_service_and_operation() {
        use Operation as O;
        let expected = |s: ServiceName| -> &'static [Operation] {
            match s {
                ServiceName::ControlApi => &[
                    O::Ping,
                    O::ReadApiDoc,
                    O::ProvisionGroup,
                    O::DeprovisionGroup,
                    O::MemberCount,
                    O::Offboard,
                    O::BreakGlass,
                    O::MailCounts,
                    O::MailDeadLetters,
                    O::ApplyRule,
                    O::CheckToken,
                    O::Directory,
                ],
                ServiceName::MembershipApi => &[
                    O::Ping,
                    O::ReadApiDoc,
                    O::AddMember,
                    O::RemoveMember,
                    O::CheckMember,
                    O::GroupsOf,
                    O::CheckToken,
                    O::Offboard,
                    O::Notify,
                ],
                ServiceName::BulkApi => &[
                    O::Ping,
                    O::ReadApiDoc,
                    O::AddMember,
                    O::RemoveMember,
                    O::ApplyBatch,
                    O::CheckToken,
                ],
                ServiceName::IsolatedTenant => &[],
            }
        };
        for service in ServiceName::ALL {
            for op in Operation::ALL {
                assert_eq!(
                    may_call(service, op),
                    expected(service).contains(&op),
                    "{service} / {op}"
                );
            }
        }
    }

    #[test]
    fn only_membership_api_asks_about_a_person() {
        for service in ServiceName::ALL {
            for op in [Operation::CheckMember, Operation::GroupsOf] {
                assert_eq!(
                    may_call(service, op),
                    service == ServiceName::MembershipApi,
                    "{service} / {op}"
                );
            }
        }
    }

    #[test]
    fn membership_api_and_bulk_api_write_single_memberships() {
        for service in ServiceName::ALL {
            for op in [Operation::AddMember, Operation::RemoveMember] {
                assert_eq!(
                    may_call(service, op),
                    matches!(service, ServiceName::MembershipApi | ServiceName::BulkApi),
                    "{service} / {op}"
                );
            }
        }
    }

    #[test]
    fn only_control_api_reaches_break_glass() {
        for service in ServiceName::ALL {
            assert_eq!(
                may_call(service, Operation::BreakGlass),
                service == ServiceName::ControlApi,
                "{service}"
            );
        }
    }

    #[test]
    fn only_bulk_api_applies_batches() {
        for service in ServiceName::ALL {
            assert_eq!(
                may_call(service, Operation::ApplyBatch),
                service == ServiceName::BulkApi,
                "{service}"
            );
        }
    }

    #[test]
    fn only_control_api_manages_groups_sees_counts_and_offboards() {
        for service in ServiceName::ALL {
            for op in [
                Operation::ProvisionGroup,
                Operation::DeprovisionGroup,
                Operation::MemberCount,
            ] {
                assert_eq!(
                    may_call(service, op),
                    service == ServiceName::ControlApi,
                    "{service} / {op}"
                );
            }
            // Operators offboard through control-api; a person forgets themselves through
            // membership-api. bulk-api never does.
            assert_eq!(
                may_call(service, Operation::Offboard),
                matches!(
                    service,
                    ServiceName::ControlApi | ServiceName::MembershipApi
                ),
                "{service} / offboard"
            );
        }
    }

    #[test]
    fn every_caller_may_ping_and_the_tenant_itself_may_do_nothing() {
        for service in [
            ServiceName::ControlApi,
            ServiceName::MembershipApi,
            ServiceName::BulkApi,
        ] {
            assert!(may_call(service, Operation::Ping) && may_call(service, Operation::ReadApiDoc));
        }
        assert!(Operation::ALL
            .iter()
            .all(|op| !may_call(ServiceName::IsolatedTenant, *op)));
    }

    #[test]
    fn markers_name_their_operations() {
        assert_eq!(<op::AddMember as Op>::OP, Operation::AddMember);
        assert_eq!(<op::ReadApiDoc as Op>::OP, Operation::ReadApiDoc);
        let names: std::collections::HashSet<_> =
            Operation::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names.len(), Operation::ALL.len());
    }
}
