//! A service registry with leases that expire by replicated time.
//!
//! An instance registers with a time-to-live and stays healthy while it heartbeats.
//! Time is the leader-assigned entry timestamp (`ctx.timestamp_ms` in apply,
//! `ctx.applied_timestamp_ms` in queries), never a clock read in the guest, so every
//! replica agrees on which leases are alive. Each command first garbage-collects up to
//! 128 expired leases.
//!
//! Commands (output: the instance's lease, e.g.
//! `{"service":"api","instance":"i-1","address":"10.0.0.1:80","ttl_ms":5000,"expires_at_ms":1700000005000}`):
//! - `{"register":{"service":"api","instance":"i-1","address":"10.0.0.1:80","ttl_ms":5000}}`
//!   creates or replaces the lease, expiring `ttl_ms` after the entry's timestamp.
//! - `{"heartbeat":{"service":"api","instance":"i-1"}}` renews it for another `ttl_ms`.
//! - `{"deregister":{"service":"api","instance":"i-1"}}` removes it, returning it.
//!
//! Heartbeat and deregister of an unknown or expired instance are rejected, as are empty
//! names, names containing a NUL byte and `ttl_ms: 0`.
//!
//! Query: `{"list":{"service":"api"}}` → the healthy instances' leases, by instance name.

mod store;

use flotilla_sdk::{ApplyContext, QueryContext, Rejection, StateMachine, reject};
use serde::{Deserialize, Serialize};

pub use store::Lease;

/// A change to the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Create or replace an instance's lease.
    Register {
        /// The service name.
        service: String,
        /// The instance name, unique within the service.
        instance: String,
        /// Where to reach the instance.
        address: String,
        /// How long the lease lasts without a heartbeat.
        ttl_ms: u64,
    },
    /// Renew a lease.
    Heartbeat {
        /// The service name.
        service: String,
        /// The instance name.
        instance: String,
    },
    /// Remove a lease.
    Deregister {
        /// The service name.
        service: String,
        /// The instance name.
        instance: String,
    },
}

/// A read of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// The healthy instances of a service.
    List {
        /// The service name.
        service: String,
    },
}

/// The registry state machine.
#[derive(Debug)]
pub struct Registry;

fn check_name(what: &str, name: &str) -> Result<(), Rejection> {
    if name.is_empty() || name.contains('\0') {
        reject!("{what} name {name:?} must be non-empty and free of NUL bytes");
    }
    Ok(())
}

fn live(service: &str, instance: &str, now: u64) -> Result<Lease, Rejection> {
    check_name("service", service)?;
    check_name("instance", instance)?;
    match store::load(service, instance)? {
        Some(lease) if lease.expires_at_ms > now => Ok(lease),
        _ => reject!("instance {instance:?} of service {service:?} is not registered"),
    }
}

impl StateMachine for Registry {
    type Command = Command;
    type Output = Lease;
    type Query = Query;
    type QueryOutput = Vec<Lease>;

    fn apply(ctx: &ApplyContext, command: Command) -> Result<Lease, Rejection> {
        let now = ctx.timestamp_ms;
        store::collect_expired(now)?;
        match command {
            Command::Register {
                service,
                instance,
                address,
                ttl_ms,
            } => {
                check_name("service", &service)?;
                check_name("instance", &instance)?;
                if ttl_ms == 0 {
                    reject!("ttl_ms must be positive");
                }
                if let Some(old) = store::load(&service, &instance)? {
                    store::remove(&old);
                }
                let lease = Lease {
                    service,
                    instance,
                    address,
                    ttl_ms,
                    expires_at_ms: now.saturating_add(ttl_ms),
                };
                store::save(&lease)?;
                Ok(lease)
            }
            Command::Heartbeat { service, instance } => {
                let old = live(&service, &instance, now)?;
                store::remove(&old);
                let lease = Lease {
                    expires_at_ms: now.saturating_add(old.ttl_ms),
                    ..old
                };
                store::save(&lease)?;
                Ok(lease)
            }
            Command::Deregister { service, instance } => {
                let lease = live(&service, &instance, now)?;
                store::remove(&lease);
                Ok(lease)
            }
        }
    }

    fn query(ctx: &QueryContext, query: Query) -> Result<Vec<Lease>, Rejection> {
        match query {
            Query::List { service } => {
                check_name("service", &service)?;
                store::list(&service, ctx.applied_timestamp_ms)
            }
        }
    }
}

flotilla_sdk::export!(Registry);

#[cfg(test)]
mod tests;
