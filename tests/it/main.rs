//! One integration-test binary (it links once); a module per feature. Every test runs against
//! the simulator on loopback with a fresh store in a temporary folder.

mod api;
mod api_write;
mod board;
mod board_day;
mod board_visits;
mod boundary;
mod browser;
mod cli;
mod config;
mod crash;
mod delivered;
mod feed;
mod first_contact;
mod helpers;
mod hostile_client;
mod listen;
mod mirror;
mod push_path;
mod queue;
mod read_path;
mod runtime;
mod service;
mod signin;
mod sim_slotti;
mod slotti_book;
mod slotti_client;
mod slotti_sync;
mod store;
mod subscribers;
mod sweep_bounds;
mod tls;
mod visits;
mod webhook;
