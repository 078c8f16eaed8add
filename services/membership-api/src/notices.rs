//! The notifications membership-api asks the tenant for (issue 19, item 2), after a request is
//! filed or decided. The tenant writes the words from its closed set of templates and sends
//! them; membership-api names only the group, a count, an outcome and, for a decision, the
//! requester's own address from their own request, which is the one recipient.
//!
//! Nothing here is on the answer's path: the hand-over runs after the answer is decided, in a
//! task of its own, and a tenant that is down costs a notification (logged, without the group
//! or the person), never the join or the decision.

use crate::AppState;
use domain::{Email, GroupId};
use tenant_api::{DecisionOutcome, Notification, MAX_NOTIFIED_COUNT};

/// A request to join `group` was filed: its owners hear how many are pending (the tenant
/// folds these into at most one mail per group per interval).
pub(crate) fn request_filed(state: &AppState, group: GroupId) {
    let (store, tenant) = (state.store.clone(), state.tenant.clone());
    tokio::spawn(async move {
        let count = match store.count_pending(group).await {
            Ok(n) => u32::try_from(n).unwrap_or(u32::MAX).min(MAX_NOTIFIED_COUNT),
            Err(e) => {
                tracing::warn!(error = %e, "pending requests could not be counted for the owners' notification");
                return;
            }
        };
        if count == 0 {
            // Withdrawn or decided in the meantime: nothing waits.
            return;
        }
        hand_over(
            tenant,
            Notification::RequestsWaiting {
                group_id: group,
                count,
            },
        )
        .await;
    });
}

/// An owner decided a request: the requester, and nobody else, hears the outcome.
pub(crate) fn request_decided(
    state: &AppState,
    group: GroupId,
    outcome: DecisionOutcome,
    to: Email,
) {
    let tenant = state.tenant.clone();
    tokio::spawn(hand_over(
        tenant,
        Notification::RequestDecided {
            group_id: group,
            outcome,
            to,
        },
    ));
}

async fn hand_over(tenant: std::sync::Arc<dyn crate::ports::Directory>, n: Notification) {
    if let Err(e) = tenant.notify(&n).await {
        tracing::warn!(error = %e, template = n.template(), "a notification could not be handed to the tenant");
    }
}
