//! A replicated bank: accounts with non-negative integer balances and atomic transfers.
//!
//! Money only moves between accounts or in and out through deposits and withdrawals,
//! so `total` is the conservation check of the linearizability and chaos tests.
//!
//! Commands (output: the affected accounts' new balances, e.g.
//! `[{"account":"alice","balance":90},{"account":"bob","balance":110}]`):
//! - `{"open":{"account":"alice","initial":100}}` (`initial` defaults to 0); opening an
//!   existing account is rejected.
//! - `{"deposit":{"account":"alice","amount":5}}`
//! - `{"withdraw":{"account":"alice","amount":5}}`; an overdraft is rejected.
//! - `{"transfer":{"from":"alice","to":"bob","amount":10}}`; both accounts must exist
//!   and differ, and `from` must hold `amount`.
//!
//! Unknown accounts are rejected. Queries:
//! - `{"balance":{"account":"alice"}}` → `{"balance":90}`
//! - `{"total":{}}` → `{"total":200}` (sum over all accounts)
//! - `{"list":{}}` → `{"list":[{"account":"alice","balance":90}, ...]}` (by name)

use flotilla_sdk::{ApplyContext, QueryContext, Rejection, StateMachine, kv, reject};
use serde::{Deserialize, Serialize};

/// A change to the accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Create an account.
    Open {
        /// Its name.
        account: String,
        /// Its opening balance.
        #[serde(default)]
        initial: u64,
    },
    /// Add money to an account.
    Deposit {
        /// The account.
        account: String,
        /// How much.
        amount: u64,
    },
    /// Take money out of an account.
    Withdraw {
        /// The account.
        account: String,
        /// How much.
        amount: u64,
    },
    /// Move money between two accounts.
    Transfer {
        /// The paying account.
        from: String,
        /// The receiving account.
        to: String,
        /// How much.
        amount: u64,
    },
}

/// A read of the accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// One account's balance.
    Balance {
        /// The account.
        account: String,
    },
    /// The sum of all balances.
    Total {},
    /// Every account and its balance.
    List {},
}

/// An account and its balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalance {
    /// The account.
    pub account: String,
    /// Its balance.
    pub balance: u64,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryOutput {
    /// For [`Query::Balance`].
    Balance(u64),
    /// For [`Query::Total`]; wider than a balance so it cannot overflow.
    Total(u128),
    /// For [`Query::List`].
    List(Vec<AccountBalance>),
}

/// Accounts live under this prefix; the value is the balance in postcard.
const PREFIX: &[u8] = b"acct/";

fn key(account: &str) -> Vec<u8> {
    [PREFIX, account.as_bytes()].concat()
}

fn balance(account: &str) -> Result<u64, Rejection> {
    kv::get_value::<u64>(&key(account))?
        .ok_or_else(|| Rejection::new(format!("unknown account {account:?}")))
}

fn set(account: &str, balance: u64) -> Result<AccountBalance, Rejection> {
    kv::put_value(&key(account), &balance)?;
    Ok(AccountBalance {
        account: account.to_owned(),
        balance,
    })
}

fn credit(account: &str, amount: u64) -> Result<AccountBalance, Rejection> {
    let current = balance(account)?;
    let Some(next) = current.checked_add(amount) else {
        reject!("deposit would overflow account {account:?} (balance {current})");
    };
    set(account, next)
}

fn debit(account: &str, amount: u64) -> Result<AccountBalance, Rejection> {
    let current = balance(account)?;
    let Some(next) = current.checked_sub(amount) else {
        reject!("insufficient funds in {account:?}: balance {current}, needs {amount}");
    };
    set(account, next)
}

fn accounts() -> impl Iterator<Item = Result<AccountBalance, Rejection>> {
    kv::scan_prefix(PREFIX).map(|(k, v)| {
        let balance = kv::decode_value::<u64>(&k, &v)?;
        let account = String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned();
        Ok(AccountBalance { account, balance })
    })
}

/// The bank state machine.
#[derive(Debug)]
pub struct Bank;

impl StateMachine for Bank {
    type Command = Command;
    type Output = Vec<AccountBalance>;
    type Query = Query;
    type QueryOutput = QueryOutput;

    fn apply(_ctx: &ApplyContext, command: Command) -> Result<Vec<AccountBalance>, Rejection> {
        match command {
            Command::Open { account, initial } => {
                if kv::get(&key(&account)).is_some() {
                    reject!("account {account:?} already exists");
                }
                Ok(vec![set(&account, initial)?])
            }
            Command::Deposit { account, amount } => Ok(vec![credit(&account, amount)?]),
            Command::Withdraw { account, amount } => Ok(vec![debit(&account, amount)?]),
            Command::Transfer { from, to, amount } => {
                if from == to {
                    reject!("cannot transfer from {from:?} to itself");
                }
                balance(&to)?;
                Ok(vec![debit(&from, amount)?, credit(&to, amount)?])
            }
        }
    }

    fn query(_ctx: &QueryContext, query: Query) -> Result<QueryOutput, Rejection> {
        match query {
            Query::Balance { account } => balance(&account).map(QueryOutput::Balance),
            Query::Total {} => accounts()
                .map(|a| a.map(|a| u128::from(a.balance)))
                .sum::<Result<u128, _>>()
                .map(QueryOutput::Total),
            Query::List {} => accounts().collect::<Result<_, _>>().map(QueryOutput::List),
        }
    }
}

flotilla_sdk::export!(Bank);

#[cfg(test)]
mod tests;
