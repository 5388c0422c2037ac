//! The faces: everything that answers a network peer (the listener's bounds, the HTTP API, the
//! board, the webhook listeners) or tells one (the outgoing events).

pub mod api;
pub mod board;
pub mod listen;
pub mod outgoing;
pub mod webhook;
