//! The isolated tenant: identities, distribution groups and sealed membership; reachable only with service tokens.
