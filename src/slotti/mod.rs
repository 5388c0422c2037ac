//! Slotti, the booking calendar where technician visits are booked.
//!
//! Domain parts that need no HTTP: [`message`] renders what the resident reads in Tampuuri,
//! [`slots`] chooses free slots and splits date ranges into Slotti's 30-day windows, and
//! [`resident`] makes the booking's customer from a ticket's reporter.

pub mod message;
pub mod resident;
pub mod slots;
