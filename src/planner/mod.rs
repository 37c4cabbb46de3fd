//! The rotation planner: a pure function of (policy, observed state, now).
