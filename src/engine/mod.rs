//! The engine: the read path (sync), queueing an action (queue), the push path (push), the
//! visits (booking, telling, reconciling with Slotti), the processing of webhook events
//! (webhook), and the status verdict. It uses the domain, the store and the integrations; it
//! imports nothing from the service or the faces.

pub mod push;
pub mod queue;
pub mod status;
pub mod sync;
pub mod visits;
pub mod webhook;
