//! Visits: what huoltosync does with Slotti's calendar, on top of the Slotti client
//! ([`crate::slotti`], a client and a wire format, like [`crate::tampuuri`]).
//!
//! - [`book`] prepares a booking for a ticket and queues it (`task book`, the board's booking
//!   form, the cycle's `auto_book`), choosing its time with [`slots`] and its customer with
//!   [`resident`];
//! - the relay delivers a queued booking (`crate::engine::push`'s Slotti relay);
//! - [`sync`] is the one rule for a booking as Slotti shows it, applied to the recorded
//!   webhook deliveries ([`deliveries`]) and by the reconciliation ([`reconcile`]);
//! - [`tell`] queues what tells Tampuuri about each visit change, in the words of [`message`].

pub mod book;
pub mod choose;
pub mod deliveries;
pub mod message;
pub mod reconcile;
pub mod resident;
pub mod slots;
pub mod sync;
pub mod tell;
