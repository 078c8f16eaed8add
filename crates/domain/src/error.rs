//! The one error type of the domain crate: a value that failed to parse, with a message that
//! says what is wrong and never echoes more of the input than the caller already sent.

/// Why a value could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input does not satisfy the rules of the named field.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field (as the API names it).
        field: &'static str,
        /// What rule it broke.
        reason: String,
    },
}

impl DomainError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}
