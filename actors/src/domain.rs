//! The pure game domain: no I/O, no wall clock, no global randomness.

pub mod abuse;
pub mod account;
pub mod achievement;
pub mod alert;
pub mod applied;
pub mod asset;
pub mod book;
pub mod command;
pub mod daily;
pub mod event;
pub mod exchange;
pub mod factor;
pub mod game;
pub mod ids;
pub mod ledger;
pub mod money;
pub mod news;
pub mod order;
pub mod price_model;
pub mod profile;
pub mod progression;
pub mod rejection;
pub mod rules;
pub mod season;
