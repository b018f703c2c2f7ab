//! jitsi-scaler: autoscaler for Jitsi video-sip-gateway pools.
//!
//! The pure policy lives in the `policy` crate; this crate holds the edges: configuration,
//! the Jicofo and lifecycle-manager clients, the store, the control loop and the HTTP API.
#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod auth;
pub mod capacity;
pub mod config;
pub mod controller;
pub mod decision;
pub mod demo;
pub mod duration;
pub mod hello;
pub mod hostname;
pub mod http_server;
pub mod jibri_conf;
pub mod jicofo;
pub mod lifecycle;
pub mod managed;
pub mod ops;
pub mod plan;
pub mod runtime;
pub mod server;
pub mod service;
pub mod sidecar;
pub mod sim;
pub mod sizing;
pub mod store;
pub mod tick;
pub mod warm_pool;
