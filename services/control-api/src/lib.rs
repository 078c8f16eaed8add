//! The group and label catalog: create, discover, edit and archive groups; label policy.
