//! The simulation's native, deterministic state machines, run through the real apply
//! path ([`StateMachineHost`]): a key-value register store (`put`, `cas`) and a bank
//! (`xfer`) whose accounts start at [`INITIAL`] each. Commands are short text lines so
//! traces stay readable: `put K V`, `cas K EXPECTED|- NEW|-`, `xfer FROM TO AMOUNT`.
//! Every command answers `ok`, `1` (swapped/applied) or `0` (not).

use crate::ids::PluginDigest;
use crate::raftstore::fsm::{
    CommandOutcome, EntryContext, FsmError, KvView, QueryContext, StateMachineHost,
};

/// Accounts of the bank group.
pub const ACCOUNTS: usize = 4;
/// What every account holds before the first transfer.
pub const INITIAL: u64 = 100;

/// The storage key of a KV register.
pub fn kv_key(name: &str) -> Vec<u8> {
    format!("k/{name}").into_bytes()
}

/// The storage key of a bank account.
pub fn account_key(i: usize) -> Vec<u8> {
    format!("acct/{i}").into_bytes()
}

/// Parses a stored balance (absent: [`INITIAL`]).
pub fn balance_of(v: Option<&[u8]>) -> Option<u64> {
    match v {
        None => Some(INITIAL),
        Some(b) => std::str::from_utf8(b).ok()?.parse().ok(),
    }
}

/// Both state machines in one host (a group only ever sees one kind of command).
#[derive(Debug, Default)]
pub struct SimFsm;

fn bad(cmd: &str) -> FsmError {
    FsmError::Invalid(format!("unknown command {cmd:?}"))
}

fn balance(kv: &KvView, i: usize) -> Result<u64, FsmError> {
    let v = kv.get(&account_key(i))?;
    balance_of(v.as_deref()).ok_or_else(|| FsmError::Rejected(format!("corrupt balance {i}")))
}

fn run(kv: &mut KvView, cmd: &[u8]) -> CommandOutcome {
    let text = std::str::from_utf8(cmd).map_err(|_| bad("<binary>"))?;
    let words: Vec<&str> = text.split(' ').collect();
    match words.as_slice() {
        ["put", k, v] => {
            kv.put(&kv_key(k), v.as_bytes())?;
            Ok(b"ok".to_vec())
        }
        ["cas", k, expected, new] => {
            let key = kv_key(k);
            let current = kv.get(&key)?;
            let expected = (*expected != "-").then(|| expected.as_bytes().to_vec());
            if current != expected {
                return Ok(b"0".to_vec());
            }
            match *new {
                "-" => kv.delete(&key)?,
                v => kv.put(&key, v.as_bytes())?,
            }
            Ok(b"1".to_vec())
        }
        ["xfer", from, to, amount] => {
            let account = |s: &str| s.parse::<usize>().ok().filter(|i| *i < ACCOUNTS);
            let (Some(from), Some(to), Ok(amount)) =
                (account(from), account(to), amount.parse::<u64>())
            else {
                return Err(bad(text));
            };
            let have = balance(kv, from)?;
            if have < amount {
                return Ok(b"0".to_vec());
            }
            kv.put(&account_key(from), (have - amount).to_string().as_bytes())?;
            let dest = balance(kv, to)?;
            kv.put(&account_key(to), (dest + amount).to_string().as_bytes())?;
            Ok(b"1".to_vec())
        }
        _ => Err(bad(text)),
    }
}

impl StateMachineHost for SimFsm {
    fn apply_entry(
        &self,
        _: PluginDigest,
        _: EntryContext,
        commands: &[&[u8]],
        mut kv: KvView,
    ) -> (KvView, Vec<CommandOutcome>) {
        let mut out = Vec::with_capacity(commands.len());
        for c in commands {
            let r = run(&mut kv, c);
            out.push(kv.settle(r));
        }
        (kv, out)
    }

    fn query(&self, _: PluginDigest, _: QueryContext, _: &[u8], _: KvView) -> CommandOutcome {
        Err(FsmError::Invalid(
            "the simulation reads the store directly".into(),
        ))
    }
}
