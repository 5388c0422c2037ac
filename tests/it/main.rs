//! One integration-test binary (it links once); a module per feature. Every test runs against
//! the simulator on loopback with a fresh store in a temporary folder.

mod cli;
mod config;
mod helpers;
mod read_path;
