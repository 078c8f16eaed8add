//! Routine membership: join, leave, my groups, am I a member.
