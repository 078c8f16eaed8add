//! Offboarding bites: a person's tokens issued before they were offboarded are refused by every
//! service, in every replica.
//!
//! A verified token proves who signed it and until when, not that its holder still works here.
//! The isolated tenant records, when someone is offboarded, that their tokens issued before that
//! moment are void; every public service asks it ([`Revocations`]) before it accepts a caller, so
//! the answer is the same in every replica. An answer "still valid" is remembered for
//! [`VALID_FOR`] (so a burst of calls with one token costs one question), which is the longest an
//! offboarding takes to reach a replica; "revoked" is remembered for good, since a token's issue
//! time never changes.
//!
//! When the tenant cannot be reached, the token is accepted and the miss is logged (a warning):
//! every membership write and read needs the tenant anyway and fails on its own, so what stays
//! open during an outage is the catalog (creating and editing groups), which is meant to keep
//! working while the tenant is down (the provisioning saga catches up). This is the one place
//! Hush leans towards availability, and only for a token the tenant has not already declared
//! void: an answer "revoked" is never forgotten.

use crate::error::AuthError;
use domain::Subject;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a "still valid" answer is reused: the most an offboarding takes to reach every
/// replica.
pub const VALID_FOR: Duration = Duration::from_secs(2);

/// Answers remembered at most; the memory is cleared when full.
const REMEMBERED: usize = 10_000;

/// A future the checks return.
pub type Check<'a> = Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;

/// Who says whether a person's token is void: the isolated tenant, through its client.
pub trait Revocations: Send + Sync + 'static {
    /// Whether tokens of `subject` issued at `issued_at` (seconds since the epoch; `None` when
    /// the token carries no `iat`) were revoked by an offboarding since. `Err` (a reason for
    /// the logs) when that cannot be told now.
    fn revoked<'a>(&'a self, subject: &'a Subject, issued_at: Option<i64>) -> Check<'a>;
}

/// Answers remembered: (subject, iat) → (revoked, when answered).
type Answers = HashMap<(Subject, Option<i64>), (bool, Instant)>;

/// [`Revocations`] with its answers remembered (see the module docs).
#[derive(Clone)]
pub(crate) struct Standing {
    source: Arc<dyn Revocations>,
    answers: Arc<Mutex<Answers>>,
}

impl Standing {
    pub(crate) fn new(source: Arc<dyn Revocations>) -> Self {
        Self {
            source,
            answers: Arc::default(),
        }
    }

    /// Drops the "still valid" answers about `subject`'s tokens (a "revoked" one stays).
    pub(crate) fn forget(&self, subject: &Subject) {
        self.answers
            .lock()
            .expect("the answers lock is never poisoned")
            .retain(|(s, _), (revoked, _)| *revoked || s != subject);
    }

    /// Refuses a token of `subject` issued at `issued_at` that an offboarding voided.
    pub(crate) async fn check(
        &self,
        subject: &Subject,
        issued_at: Option<i64>,
    ) -> Result<(), AuthError> {
        let key = (subject.clone(), issued_at);
        let known = self
            .answers
            .lock()
            .expect("the answers lock is never poisoned")
            .get(&key)
            .copied();
        let revoked = match known {
            Some((true, _)) => true,
            Some((false, at)) if at.elapsed() < VALID_FOR => false,
            _ => {
                let revoked = match self.source.revoked(subject, issued_at).await {
                    Ok(revoked) => revoked,
                    Err(reason) => {
                        tracing::warn!(%reason, "cannot tell whether a token was revoked; accepted");
                        return Ok(());
                    }
                };
                let mut answers = self.answers.lock().expect("never poisoned");
                if answers.len() >= REMEMBERED {
                    answers.clear();
                }
                answers.insert(key, (revoked, Instant::now()));
                revoked
            }
        };
        if revoked {
            Err(AuthError::invalid(
                "this token was issued before its holder was offboarded; it is no longer accepted",
            ))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Revokes tokens issued before 100; counts the questions.
    struct Before100(AtomicU32);

    impl Revocations for Before100 {
        fn revoked<'a>(&'a self, _: &'a Subject, issued_at: Option<i64>) -> Check<'a> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(issued_at.is_none_or(|t| t < 100)) })
        }
    }

    struct Down;

    impl Revocations for Down {
        fn revoked<'a>(&'a self, _: &'a Subject, _: Option<i64>) -> Check<'a> {
            Box::pin(async { Err("the tenant is not answering".into()) })
        }
    }

    #[tokio::test]
    async fn void_tokens_are_refused_and_answers_are_reused() {
        let source = Arc::new(Before100(AtomicU32::new(0)));
        let standing = Standing::new(source.clone());
        let carol = Subject::parse("carol").unwrap();
        assert!(standing.check(&carol, Some(150)).await.is_ok());
        assert!(standing.check(&carol, Some(150)).await.is_ok());
        assert_eq!(
            source.0.load(Ordering::SeqCst),
            1,
            "the second answer was remembered"
        );
        let err = standing.check(&carol, Some(50)).await.unwrap_err();
        assert!(err.is_unauthorized(), "{err}");
        assert!(
            standing.check(&carol, None).await.is_err(),
            "no iat: fail closed"
        );
    }

    #[tokio::test]
    async fn while_the_tenant_is_unreachable_a_token_not_known_to_be_void_is_accepted() {
        let standing = Standing::new(Arc::new(Down));
        assert!(standing
            .check(&Subject::parse("carol").unwrap(), Some(1))
            .await
            .is_ok());
    }
}
