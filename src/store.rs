//! Storage adapters of the engine's [`Store`](actors::ports::Store) port:
//! PostgreSQL ([`PostgresStore`]) for durable, shared deployments and SQLite
//! ([`EmbeddedStore`]) for the single binary, both on the schema in `sql/`
//! and both held to one contract-test suite (`tests/store_contract.rs`).

pub mod embedded;
mod fills;
pub mod migrate;
mod plan;
pub mod postgres;

pub use embedded::EmbeddedStore;
pub use migrate::migrate;
pub use postgres::PostgresStore;
