//! The domain: tickets and their states, the actions on them and the workflow rules they must pass,
//! the cost of calls, time, text escaping and the backoff rule. It imports no integration, no
//! config and no store.

pub mod action;
pub mod backoff;
pub mod cost;
pub mod escape;
pub mod model;
pub mod time;
