//! Pure types and rules of Hush. No I/O lives here: every service parses its input into these
//! types at the edge, so a value of one of them is valid by construction, and every policy
//! decision (may this identity enter a group under this label?) is one pure function that all
//! paths share.

pub mod access;
mod error;
mod ids;
mod label;
mod membership;
pub mod schema;

pub use access::{may_bind, BindingRefusal, GroupType, Guard};
pub use error::DomainError;
pub use ids::{Email, GroupId, GroupName, LabelName, LocalPart, Subject};
pub use label::{
    alias_group, anonymous_alias, JoinPolicy, Label, LabelPolicy, SenderPolicy,
    ANONYMOUS_ALIAS_SUFFIX, MAX_LABEL_RANK,
};
pub use membership::{
    may_enter, CountBucket, EntryRefusal, EntryRule, GroupState, IdentityKind, ServiceName,
};
