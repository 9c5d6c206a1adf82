//! Integration tests: the real server over loopback HTTP, on SQLite by default and
//! on PostgreSQL when TEST_DATABASE_URL is set (see .ci/run).

mod api;
mod api_keys;
mod callbacks;
mod console;
mod contract;
mod control_plane;
mod durability;
mod edge;
mod fake_wecom;
mod front_door;
mod helpers;
mod ids;
mod layers;
mod licenses;
mod lifecycle;
mod openapi;
mod operations;
mod pipeline;
mod tokens;
mod webhooks;
