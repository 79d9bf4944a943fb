//! Linearizability checker for client histories recorded during integration tests.
//!
//! Tests record what their clients did with a [`History`] (one [`Operation`] per
//! request: who sent it, what it asked, what came back, and when it was sent and
//! answered) and hand the operations to [`check`] together with a sequential [`Model`]
//! of the service. The history is split into independent sub-histories with
//! [`Model::partition`] (for a key-value store: one per key, since linearizability is
//! compositional), and each one is searched on its own with the Wing–Gong algorithm as
//! refined by Lowe: depth-first, the search picks a not yet linearized operation that
//! may come next (one invoked no later than the earliest return among the operations
//! still pending), applies it to the model state, and backtracks when the model rejects
//! the recorded output. Every `(set of linearized operations, model state)` pair reached
//! is remembered as a bitset plus state, so a configuration reached again along a
//! different order is not explored twice. An operation whose outcome is unknown (it
//! timed out, or the client gave up) has its return time treated as +infinity: it may
//! be linearized anywhere after its invocation, with any output the model allows
//! ([`Model::step_unknown`]), or never; the search succeeds once every operation with a
//! known output is linearized. The search is bounded by
//! [`CheckOptions::max_states`] per partition, past which [`check_with`] answers
//! [`CheckResult::Unknown`] instead of running on.
//!
//! Two models come with it: [`KvModel`] (put, get, cas and delete on independent
//! keys) and [`BankModel`] (transfers between accounts and reads of every balance).

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

#[cfg(test)]
mod tests;

/// A sequential specification of the service whose histories are checked.
pub trait Model {
    /// The state of one partition of the service (e.g. one register).
    type State: Clone + Eq + Hash + Debug;
    /// What a client asked for.
    type Input: Debug;
    /// What the service answered.
    type Output: Debug;
    /// Names a partition; operations on different partitions are checked independently.
    type Key: Ord + Debug;

    /// The state of every partition before the first operation.
    fn init() -> Self::State;

    /// The state after `input` was applied to `state` and answered with `output`, or
    /// `None` if the service could not have answered `output` from `state`.
    fn step(state: &Self::State, input: &Self::Input, output: &Self::Output)
    -> Option<Self::State>;

    /// Every state `input` may lead to from `state` when its output was never seen
    /// (the operation timed out). Empty if it cannot take effect from `state` at all.
    fn step_unknown(state: &Self::State, input: &Self::Input) -> Vec<Self::State>;

    /// The partition `input` belongs to; all operations of one partition must be
    /// describable by one [`Model::State`] independently of the others.
    fn partition(input: &Self::Input) -> Self::Key;
}

/// One client request as seen by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Which client sent it (for the explanation only; each client should have at most
    /// one operation outstanding at a time).
    pub client: u64,
    pub input: I,
    /// The answer, or `None` if it is unknown (timeout, connection lost): the operation
    /// may or may not have taken effect.
    pub output: Option<O>,
    /// When it was sent, in monotonic nanoseconds since some base.
    pub call: u64,
    /// When the answer arrived; `None` (or an unknown `output`) counts as +infinity.
    pub ret: Option<u64>,
}

/// Identifies an operation recorded by [`History::invoke`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(usize);

/// A thread-safe recorder of [`Operation`]s; share it between tokio tasks in an `Arc`.
///
/// Call [`History::invoke`] right before sending a request and [`History::complete`]
/// right after its answer arrives; an operation never completed (or marked with
/// [`History::unknown`]) has an unknown outcome.
#[derive(Debug)]
pub struct History<I, O> {
    base: Instant,
    ops: Mutex<Vec<Operation<I, O>>>,
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> History<I, O> {
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Operation<I, O>>> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `client` sends `input` now.
    pub fn invoke(&self, client: u64, input: I) -> OpId {
        let call = self.now();
        let mut ops = self.lock();
        ops.push(Operation {
            client,
            input,
            output: None,
            call,
            ret: None,
        });
        OpId(ops.len() - 1)
    }

    /// Records that the operation `id` was answered with `output` now.
    pub fn complete(&self, id: OpId, output: O) {
        let ret = self.now();
        if let Some(op) = self.lock().get_mut(id.0) {
            op.output = Some(output);
            op.ret = Some(ret);
        }
    }

    /// Records that the outcome of `id` is unknown (e.g. it timed out); this is also
    /// what an operation never completed counts as.
    pub fn unknown(&self, id: OpId) {
        if let Some(op) = self.lock().get_mut(id.0) {
            op.output = None;
            op.ret = None;
        }
    }

    /// A copy of the operations recorded so far, in invocation order.
    pub fn operations(&self) -> Vec<Operation<I, O>>
    where
        I: Clone,
        O: Clone,
    {
        self.lock().clone()
    }

    /// The operations recorded, in invocation order.
    pub fn into_operations(self) -> Vec<Operation<I, O>> {
        self.ops
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// [`check`]s the operations recorded so far against `M`.
    pub fn check<M: Model<Input = I, Output = O>>(&self) -> CheckResult {
        check::<M>(&self.lock())
    }
}

/// Limits on the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// How many distinct `(linearized set, model state)` configurations the search may
    /// visit in one partition before giving up with [`CheckResult::Unknown`]. Each costs
    /// one bitset of `n / 8` bytes plus a state, so the default (1 000 000) keeps a
    /// partition of a few hundred operations well under a gigabyte.
    pub max_states: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            max_states: 1_000_000,
        }
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Every partition has a linearization.
    Ok,
    /// A partition has none (reported even if other partitions were `Unknown`).
    Violation {
        /// The partition's key, `Debug`-formatted.
        partition: String,
        /// The longest order the search could linearize, the state it reached and the
        /// operations that could not be placed after it.
        explanation: String,
    },
    /// The search bound ran out in this partition before an answer was found.
    Unknown {
        partition: String,
        states_visited: usize,
    },
}

/// Checks `history` against `M` with the default [`CheckOptions`].
pub fn check<M: Model>(history: &[Operation<M::Input, M::Output>]) -> CheckResult {
    check_with::<M>(history, &CheckOptions::default())
}

/// Checks `history` against `M`, one partition at a time in key order.
pub fn check_with<M: Model>(
    history: &[Operation<M::Input, M::Output>],
    options: &CheckOptions,
) -> CheckResult {
    let mut partitions: BTreeMap<M::Key, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        partitions
            .entry(M::partition(&op.input))
            .or_default()
            .push(index);
    }
    let mut unknown = None;
    for (key, indices) in partitions {
        match search::<M>(history, indices, options.max_states) {
            Outcome::Linearizable => {}
            Outcome::Violation(explanation) => {
                return CheckResult::Violation {
                    partition: format!("{key:?}"),
                    explanation,
                };
            }
            Outcome::GaveUp(states_visited) => {
                unknown.get_or_insert(CheckResult::Unknown {
                    partition: format!("{key:?}"),
                    states_visited,
                });
            }
        }
    }
    unknown.unwrap_or(CheckResult::Ok)
}

enum Outcome {
    Linearizable,
    Violation(String),
    GaveUp(usize),
}

/// A linearization order, shared between search frames (newest operation first).
struct PathNode {
    op: usize,
    prev: Option<Rc<PathNode>>,
}

struct Frame<S> {
    linearized: Box<[u64]>,
    state: S,
    /// Linearized operations with a known output.
    done: usize,
    /// The earliest return among the operations not yet linearized.
    min_ret: u64,
    /// The next position (in invocation order) to try as the next operation.
    next: usize,
    path: Option<Rc<PathNode>>,
}

fn is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

struct Entry<'a, I, O> {
    /// Index in the whole history.
    index: usize,
    op: &'a Operation<I, O>,
    ret: u64,
}

impl<I: Debug, O: Debug> fmt::Display for Entry<'_, I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.op;
        write!(
            f,
            "#{} client {}: {:?} -> ",
            self.index, op.client, op.input
        )?;
        match &op.output {
            Some(output) => write!(f, "{output:?}")?,
            None => write!(f, "unknown")?,
        }
        match op.ret {
            Some(ret) if op.output.is_some() => write!(f, " [{}..{ret}]", op.call),
            _ => write!(f, " [{}..∞]", op.call),
        }
    }
}

/// Searches one partition (`indices` into `history`) for a linearization.
fn search<M: Model>(
    history: &[Operation<M::Input, M::Output>],
    indices: Vec<usize>,
    max_states: usize,
) -> Outcome {
    let mut entries: Vec<Entry<'_, M::Input, M::Output>> = indices
        .into_iter()
        .map(|index| {
            let op = &history[index];
            let ret = match (&op.output, op.ret) {
                (Some(_), Some(ret)) => ret.max(op.call),
                _ => u64::MAX,
            };
            Entry { index, op, ret }
        })
        .collect();
    entries.sort_by_key(|e| (e.op.call, e.index));
    let n = entries.len();
    let required = entries.iter().filter(|e| e.op.output.is_some()).count();
    if required == 0 {
        return Outcome::Linearizable;
    }
    let min_ret = |bits: &[u64]| {
        (0..n)
            .filter(|&j| !is_set(bits, j))
            .map(|j| entries[j].ret)
            .min()
            .unwrap_or(u64::MAX)
    };

    let root = Frame {
        linearized: vec![0u64; n.div_ceil(64)].into_boxed_slice(),
        state: M::init(),
        done: 0,
        min_ret: entries.iter().map(|e| e.ret).min().unwrap_or(u64::MAX),
        next: 0,
        path: None,
    };
    let mut seen: HashSet<(Box<[u64]>, M::State)> = HashSet::new();
    seen.insert((root.linearized.clone(), root.state.clone()));
    let mut best = (0, None, root.state.clone(), root.linearized.clone());
    let mut stack = vec![root];

    while let Some(frame) = stack.last_mut() {
        // The next candidate: not linearized, and invoked no later than every pending
        // operation returned (otherwise one of those must come first).
        let mut pick = None;
        while frame.next < n {
            let i = frame.next;
            frame.next += 1;
            if entries[i].op.call > frame.min_ret {
                frame.next = n;
                break;
            }
            if !is_set(&frame.linearized, i) {
                pick = Some(i);
                break;
            }
        }
        let Some(i) = pick else {
            stack.pop();
            continue;
        };
        let op = entries[i].op;
        let successors = match &op.output {
            Some(output) => M::step(&frame.state, &op.input, output)
                .into_iter()
                .collect(),
            None => M::step_unknown(&frame.state, &op.input),
        };
        if successors.is_empty() {
            continue;
        }
        let mut linearized = frame.linearized.clone();
        linearized[i / 64] |= 1 << (i % 64);
        let done = frame.done + usize::from(op.output.is_some());
        let path = Some(Rc::new(PathNode {
            op: i,
            prev: frame.path.clone(),
        }));
        if done == required {
            return Outcome::Linearizable;
        }
        let next_min_ret = min_ret(&linearized);
        for state in successors {
            if !seen.insert((linearized.clone(), state.clone())) {
                continue;
            }
            if seen.len() > max_states {
                return Outcome::GaveUp(seen.len());
            }
            if done > best.0 {
                best = (done, path.clone(), state.clone(), linearized.clone());
            }
            stack.push(Frame {
                linearized: linearized.clone(),
                state,
                done,
                min_ret: next_min_ret,
                next: 0,
                path: path.clone(),
            });
        }
    }

    let (_, path, state, linearized) = best;
    let mut order = Vec::new();
    let mut node = path.as_deref();
    while let Some(p) = node {
        order.push(p.op);
        node = p.prev.as_deref();
    }
    order.reverse();
    let mut explanation = format!(
        "no linearization of these {n} operations ({required} with a known output)\n\
         longest linearizable order ({} operations):\n",
        order.len()
    );
    for &i in &order {
        explanation.push_str(&format!("  {}\n", entries[i]));
    }
    explanation.push_str(&format!(
        "which leaves the model in state {state:?}; none of these fits next:\n"
    ));
    const SHOWN: usize = 20;
    let pending: Vec<usize> = (0..n).filter(|&i| !is_set(&linearized, i)).collect();
    for &i in pending.iter().take(SHOWN) {
        explanation.push_str(&format!("  {}\n", entries[i]));
    }
    if pending.len() > SHOWN {
        explanation.push_str(&format!("  ... and {} more\n", pending.len() - SHOWN));
    }
    Outcome::Violation(explanation)
}

/// A key-value store where each key is an independent register that starts absent.
///
/// Partitioned by key, so its [`Model::State`] is the value of one key.
#[derive(Debug)]
pub struct KvModel<K, V>(PhantomData<(K, V)>);

/// A request to a [`KvModel`] store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvInput<K, V> {
    Put {
        key: K,
        value: V,
    },
    Get {
        key: K,
    },
    /// Sets the key to `new` (`None` deletes it) if its value is `expected` (`None`:
    /// absent).
    Cas {
        key: K,
        expected: Option<V>,
        new: Option<V>,
    },
    Delete {
        key: K,
    },
}

/// An answer from a [`KvModel`] store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOutput<V> {
    /// A put or delete was applied.
    Ok,
    /// What a get read (`None`: absent).
    Value(Option<V>),
    /// Whether a cas swapped.
    Cas(bool),
}

impl<K, V> Model for KvModel<K, V>
where
    K: Clone + Ord + Debug,
    V: Clone + Eq + Hash + Debug,
{
    type State = Option<V>;
    type Input = KvInput<K, V>;
    type Output = KvOutput<V>;
    type Key = K;

    fn init() -> Self::State {
        None
    }

    fn step(state: &Option<V>, input: &KvInput<K, V>, output: &KvOutput<V>) -> Option<Option<V>> {
        match (input, output) {
            (KvInput::Put { value, .. }, KvOutput::Ok) => Some(Some(value.clone())),
            (KvInput::Delete { .. }, KvOutput::Ok) => Some(None),
            (KvInput::Get { .. }, KvOutput::Value(read)) => (read == state).then(|| state.clone()),
            (KvInput::Cas { expected, new, .. }, KvOutput::Cas(swapped)) => {
                match (expected == state, swapped) {
                    (true, true) => Some(new.clone()),
                    (false, false) => Some(state.clone()),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn step_unknown(state: &Option<V>, input: &KvInput<K, V>) -> Vec<Option<V>> {
        let next = match input {
            KvInput::Put { value, .. } => Some(value.clone()),
            KvInput::Delete { .. } => None,
            KvInput::Get { .. } => state.clone(),
            KvInput::Cas { expected, new, .. } if expected == state => new.clone(),
            KvInput::Cas { .. } => state.clone(),
        };
        vec![next]
    }

    fn partition(input: &KvInput<K, V>) -> K {
        match input {
            KvInput::Put { key, .. }
            | KvInput::Get { key }
            | KvInput::Cas { key, .. }
            | KvInput::Delete { key } => key.clone(),
        }
    }
}

/// A bank of `ACCOUNTS` accounts that each start with `INITIAL`; transfers fail without
/// effect when the source account holds less than the amount. Not partitioned (reads
/// see every account), so histories are checked as a whole.
#[derive(Debug)]
pub struct BankModel<const ACCOUNTS: usize, const INITIAL: u64>;

/// A request to a [`BankModel`] bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankInput {
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
    },
    /// Reads every balance at once.
    Read,
}

/// An answer from a [`BankModel`] bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankOutput {
    /// Whether the transfer was applied (`false`: insufficient funds).
    Transfer(bool),
    Balances(Vec<u64>),
}

impl<const ACCOUNTS: usize, const INITIAL: u64> BankModel<ACCOUNTS, INITIAL> {
    /// The balances after `transfer` and whether it was applied, or `None` if it names
    /// an account that does not exist.
    fn transfer(state: &[u64], from: usize, to: usize, amount: u64) -> Option<(Vec<u64>, bool)> {
        if from >= ACCOUNTS || to >= ACCOUNTS {
            return None;
        }
        let mut next = state.to_vec();
        if next[from] < amount {
            return Some((next, false));
        }
        next[from] -= amount;
        next[to] = next[to].checked_add(amount)?;
        Some((next, true))
    }
}

impl<const ACCOUNTS: usize, const INITIAL: u64> Model for BankModel<ACCOUNTS, INITIAL> {
    type State = Vec<u64>;
    type Input = BankInput;
    type Output = BankOutput;
    type Key = ();

    fn init() -> Vec<u64> {
        vec![INITIAL; ACCOUNTS]
    }

    fn step(state: &Vec<u64>, input: &BankInput, output: &BankOutput) -> Option<Vec<u64>> {
        match (input, output) {
            (BankInput::Transfer { from, to, amount }, BankOutput::Transfer(applied)) => {
                let (next, ok) = Self::transfer(state, *from, *to, *amount)?;
                (ok == *applied).then_some(next)
            }
            (BankInput::Read, BankOutput::Balances(read)) => (read == state).then(|| state.clone()),
            _ => None,
        }
    }

    fn step_unknown(state: &Vec<u64>, input: &BankInput) -> Vec<Vec<u64>> {
        match input {
            BankInput::Transfer { from, to, amount } => Self::transfer(state, *from, *to, *amount)
                .map(|(next, _)| next)
                .into_iter()
                .collect(),
            BankInput::Read => vec![state.clone()],
        }
    }

    fn partition(_: &BankInput) {}
}
