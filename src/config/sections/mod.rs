//! The sections of the faces and of Slotti (`[api]`, `[[api.subscribers]]`, `[board]`,
//! `[slotti]`): their validated types and how the config's one [`Reader`](super::reader::Reader)
//! reads them. The faces import these types from `crate::config`; the config imports no face.

pub(super) mod api;
pub(super) mod board;
pub(super) mod slotti;
pub(super) mod subscribers;
