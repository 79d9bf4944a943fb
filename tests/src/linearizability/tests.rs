use super::*;

type Kv = KvModel<&'static str, u32>;
type Op = Operation<KvInput<&'static str, u32>, KvOutput<u32>>;

fn put(key: &'static str, value: u32) -> KvInput<&'static str, u32> {
    KvInput::Put { key, value }
}

fn get(key: &'static str) -> KvInput<&'static str, u32> {
    KvInput::Get { key }
}

fn cas(key: &'static str, expected: Option<u32>, new: Option<u32>) -> KvInput<&'static str, u32> {
    KvInput::Cas { key, expected, new }
}

/// An operation answered with `output` between `call` and `ret`.
fn op(
    client: u64,
    input: KvInput<&'static str, u32>,
    output: KvOutput<u32>,
    call: u64,
    ret: u64,
) -> Op {
    Operation {
        client,
        input,
        output: Some(output),
        call,
        ret: Some(ret),
    }
}

/// An operation sent at `call` whose answer never came.
fn timed_out(client: u64, input: KvInput<&'static str, u32>, call: u64) -> Op {
    Operation {
        client,
        input,
        output: None,
        call,
        ret: None,
    }
}

fn read(value: Option<u32>) -> KvOutput<u32> {
    KvOutput::Value(value)
}

fn assert_ok(history: &[Op]) {
    assert_eq!(check::<Kv>(history), CheckResult::Ok, "{history:#?}");
}

fn assert_violation(history: &[Op], key: &str) {
    match check::<Kv>(history) {
        CheckResult::Violation {
            partition,
            explanation,
        } => {
            assert_eq!(partition, format!("{key:?}"), "{explanation}");
            assert!(explanation.contains("longest linearizable order"));
        }
        other => panic!("expected a violation on {key}, got {other:?} for {history:#?}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_ok(&[]);
}

#[test]
fn reads_overlapping_a_write_may_see_either_value() {
    assert_ok(&[
        op(1, put("x", 1), KvOutput::Ok, 0, 100),
        op(2, get("x"), read(None), 10, 20),
        op(3, get("x"), read(Some(1)), 30, 40),
        op(2, get("x"), read(Some(1)), 50, 60),
    ]);
    // Two concurrent writes, observed in either order by overlapping reads.
    assert_ok(&[
        op(1, put("x", 1), KvOutput::Ok, 0, 50),
        op(2, put("x", 2), KvOutput::Ok, 0, 50),
        op(3, get("x"), read(Some(2)), 10, 20),
        op(4, get("x"), read(Some(1)), 30, 60),
    ]);
}

#[test]
fn timed_out_write_observed_later_is_linearizable() {
    assert_ok(&[
        timed_out(1, put("x", 1), 0),
        op(2, get("x"), read(None), 10, 20),
        op(2, get("x"), read(Some(1)), 500, 510),
        op(2, get("x"), read(Some(1)), 600, 610),
    ]);
}

#[test]
fn timed_out_write_never_observed_is_linearizable() {
    assert_ok(&[
        timed_out(1, put("x", 1), 0),
        op(2, get("x"), read(None), 50, 60),
        op(2, get("x"), read(None), 70, 80),
    ]);
}

#[test]
fn timed_out_write_cannot_take_effect_before_it_was_sent() {
    assert_violation(
        &[
            op(2, get("x"), read(Some(1)), 0, 10),
            timed_out(1, put("x", 1), 20),
        ],
        "x",
    );
}

#[test]
fn timed_out_write_cannot_take_effect_twice() {
    // Once overwritten, the value of a single timed-out put cannot come back.
    assert_violation(
        &[
            timed_out(1, put("x", 1), 0),
            op(2, get("x"), read(Some(1)), 10, 20),
            op(2, put("x", 2), KvOutput::Ok, 30, 40),
            op(2, get("x"), read(Some(1)), 50, 60),
        ],
        "x",
    );
}

#[test]
fn stale_read_after_completed_write_is_a_violation() {
    assert_violation(
        &[
            op(1, put("x", 1), KvOutput::Ok, 0, 10),
            op(1, put("x", 2), KvOutput::Ok, 20, 30),
            op(2, get("x"), read(Some(1)), 40, 50),
        ],
        "x",
    );
    assert_violation(
        &[
            op(1, put("x", 1), KvOutput::Ok, 0, 10),
            op(2, get("x"), read(None), 20, 30),
        ],
        "x",
    );
}

#[test]
fn sequential_reads_going_back_in_time_are_a_violation() {
    // The write overlaps both reads, but once one read saw it a later one must too.
    assert_violation(
        &[
            op(1, put("x", 1), KvOutput::Ok, 0, 100),
            op(2, get("x"), read(Some(1)), 10, 20),
            op(3, get("x"), read(None), 30, 40),
        ],
        "x",
    );
}

#[test]
fn reading_a_value_never_written_is_a_violation() {
    assert_violation(
        &[
            op(1, put("x", 1), KvOutput::Ok, 0, 100),
            op(2, get("x"), read(Some(7)), 10, 20),
        ],
        "x",
    );
}

#[test]
fn cas_swaps_only_from_the_expected_value() {
    assert_ok(&[
        op(1, cas("x", None, Some(1)), KvOutput::Cas(true), 0, 10),
        op(1, cas("x", Some(5), Some(2)), KvOutput::Cas(false), 20, 30),
        op(1, cas("x", Some(1), Some(2)), KvOutput::Cas(true), 40, 50),
        op(1, get("x"), read(Some(2)), 60, 70),
        op(1, cas("x", Some(2), None), KvOutput::Cas(true), 80, 90),
        op(1, get("x"), read(None), 100, 110),
    ]);
    // Succeeding from the wrong value.
    assert_violation(
        &[
            op(1, put("x", 1), KvOutput::Ok, 0, 10),
            op(1, cas("x", Some(5), Some(2)), KvOutput::Cas(true), 20, 30),
        ],
        "x",
    );
    // Failing although the value was the expected one.
    assert_violation(
        &[
            op(1, put("x", 1), KvOutput::Ok, 0, 10),
            op(1, cas("x", Some(1), Some(2)), KvOutput::Cas(false), 20, 30),
        ],
        "x",
    );
    // Two concurrent cas from the same value cannot both succeed.
    assert_violation(
        &[
            op(1, cas("x", None, Some(1)), KvOutput::Cas(true), 0, 10),
            op(2, cas("x", None, Some(2)), KvOutput::Cas(true), 0, 10),
        ],
        "x",
    );
    // A timed-out cas may have swapped.
    assert_ok(&[
        op(1, put("x", 1), KvOutput::Ok, 0, 10),
        timed_out(2, cas("x", Some(1), Some(3)), 20),
        op(1, get("x"), read(Some(3)), 30, 40),
        op(1, cas("x", Some(3), Some(4)), KvOutput::Cas(true), 50, 60),
    ]);
}

#[test]
fn delete_makes_the_key_absent() {
    assert_ok(&[
        op(1, put("x", 1), KvOutput::Ok, 0, 10),
        op(1, KvInput::Delete { key: "x" }, KvOutput::Ok, 20, 30),
        op(1, get("x"), read(None), 40, 50),
    ]);
    assert_violation(
        &[
            op(1, put("x", 1), KvOutput::Ok, 0, 10),
            op(1, KvInput::Delete { key: "x" }, KvOutput::Ok, 20, 30),
            op(1, get("x"), read(Some(1)), 40, 50),
        ],
        "x",
    );
}

#[test]
fn keys_are_checked_independently() {
    // As one register this would be a violation; as two keys it is fine.
    assert_ok(&[
        op(1, put("x", 1), KvOutput::Ok, 0, 10),
        op(2, get("y"), read(None), 20, 30),
        op(1, put("y", 2), KvOutput::Ok, 40, 50),
        op(2, get("x"), read(Some(1)), 60, 70),
    ]);
    // The violation is reported on the key it happened on.
    assert_violation(
        &[
            op(1, put("x", 1), KvOutput::Ok, 0, 10),
            op(1, put("y", 1), KvOutput::Ok, 0, 10),
            op(2, get("x"), read(Some(1)), 20, 30),
            op(2, get("y"), read(None), 20, 30),
        ],
        "y",
    );
}

#[test]
fn gives_up_past_the_state_bound() {
    // Many concurrent writes and a read of a value nobody wrote: every subset of the
    // writes is a distinct configuration to explore before concluding.
    let mut history: Vec<Op> = (0..12)
        .map(|i| op(i, put("x", i as u32), KvOutput::Ok, 0, 1000))
        .collect();
    history.push(op(99, get("x"), read(Some(99)), 0, 1000));
    let result = check_with::<Kv>(&history, &CheckOptions { max_states: 100 });
    assert!(
        matches!(result, CheckResult::Unknown { ref partition, states_visited } if partition == "\"x\"" && states_visited > 100),
        "{result:?}"
    );
    // With the default bound the same history is found violating.
    assert_violation(&history, "x");
}

#[test]
fn explanation_names_the_operations() {
    let history = [
        op(1, put("x", 1), KvOutput::Ok, 0, 10),
        op(7, get("x"), read(Some(3)), 20, 30),
    ];
    let CheckResult::Violation { explanation, .. } = check::<Kv>(&history) else {
        panic!("expected a violation");
    };
    assert!(explanation.contains("#0 client 1: Put"), "{explanation}");
    assert!(explanation.contains("#1 client 7: Get"), "{explanation}");
    assert!(explanation.contains("Some(1)"), "{explanation}");
}

#[tokio::test]
async fn recorder_from_tokio_tasks() {
    let history = std::sync::Arc::new(History::<KvInput<&'static str, u32>, KvOutput<u32>>::new());
    let register = std::sync::Arc::new(Mutex::new(None::<u32>));
    let mut tasks = Vec::new();
    for client in 0..4u64 {
        let history = history.clone();
        let register = register.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..5u32 {
                let value = client as u32 * 100 + round;
                let id = history.invoke(client, put("x", value));
                *register.lock().expect("register") = Some(value);
                tokio::task::yield_now().await;
                history.complete(id, KvOutput::Ok);
                let id = history.invoke(client, get("x"));
                let seen = *register.lock().expect("register");
                tokio::task::yield_now().await;
                history.complete(id, read(seen));
            }
            // A request whose answer is lost.
            let id = history.invoke(client, put("x", 1000 + client as u32));
            history.unknown(id);
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(history.operations().len(), 4 * 11);
    assert_eq!(history.check::<Kv>(), CheckResult::Ok);
    let mut ops = std::sync::Arc::try_unwrap(history)
        .expect("only owner")
        .into_operations();
    let last_get = ops
        .iter_mut()
        .rev()
        .find(|o| matches!(o.input, KvInput::Get { .. }))
        .expect("a get");
    last_get.output = Some(read(Some(4242)));
    assert_violation(&ops, "x");
}

/// splitmix64, enough randomness for generating histories.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A history of a real sequential execution on a few keys: operation `i` takes effect
/// at time `10 * i` and its interval is stretched randomly around that point, so the
/// execution order is a valid linearization. Some operations time out (output unknown),
/// and some of those never took effect at all.
fn random_history(rng: &mut Rng, len: usize) -> Vec<Op> {
    const KEYS: [&str; 3] = ["a", "b", "c"];
    let mut store: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut history = Vec::with_capacity(len);
    for i in 0..len {
        let key = KEYS[rng.below(KEYS.len() as u64) as usize];
        let current = store.get(key).copied();
        let value = rng.below(5) as u32;
        let (input, output) = match rng.below(4) {
            0 => (put(key, value), KvOutput::Ok),
            1 => (get(key), read(current)),
            2 => {
                let expected = if rng.below(2) == 0 {
                    current
                } else {
                    Some(value)
                };
                (
                    cas(key, expected, Some(value + 10)),
                    KvOutput::Cas(expected == current),
                )
            }
            _ => (KvInput::Delete { key }, KvOutput::Ok),
        };
        let point = 10 * i as u64 + 1000;
        let call = point - rng.below(40);
        let ret = point + rng.below(40);
        let outcome = rng.below(10);
        if outcome == 0 {
            // Timed out without taking effect: do not apply it.
            history.push(timed_out(rng.below(8), input, call));
            continue;
        }
        match &input {
            KvInput::Put { value, .. } => {
                store.insert(key, *value);
            }
            KvInput::Delete { .. } => {
                store.remove(key);
            }
            KvInput::Cas { new, .. } if output == KvOutput::Cas(true) => match new {
                Some(new) => {
                    store.insert(key, *new);
                }
                None => {
                    store.remove(key);
                }
            },
            _ => {}
        }
        if outcome == 1 {
            history.push(timed_out(rng.below(8), input, call));
        } else {
            history.push(op(rng.below(8), input, output, call, ret));
        }
    }
    history
}

#[test]
fn random_sequential_histories_are_linearizable_and_mutations_are_caught() {
    let mut rng = Rng(0x5EED_F107_111A);
    let mut mutated = 0;
    for _ in 0..200 {
        let len = 10 + rng.below(60) as usize;
        let mut history = random_history(&mut rng, len);
        assert_ok(&history);

        // A known read of a value nobody ever wrote cannot be linearized.
        let reads: Vec<usize> = history
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o.input, KvInput::Get { .. }) && o.output.is_some())
            .map(|(i, _)| i)
            .collect();
        if reads.is_empty() {
            continue;
        }
        let victim = reads[rng.below(reads.len() as u64) as usize];
        history[victim].output = Some(read(Some(999)));
        let key = match history[victim].input {
            KvInput::Get { key } => key,
            _ => unreachable!(),
        };
        assert_violation(&history, key);
        mutated += 1;
    }
    assert!(mutated > 150, "only {mutated} histories mutated");
}

type Bank = BankModel<3, 10>;

fn bank_op(
    client: u64,
    input: BankInput,
    output: BankOutput,
    call: u64,
    ret: u64,
) -> Operation<BankInput, BankOutput> {
    Operation {
        client,
        input,
        output: Some(output),
        call,
        ret: Some(ret),
    }
}

fn transfer(from: usize, to: usize, amount: u64) -> BankInput {
    BankInput::Transfer { from, to, amount }
}

#[test]
fn bank_reads_see_whole_transfers() {
    let balances = |b: [u64; 3]| BankOutput::Balances(b.to_vec());
    // Two concurrent transfers; reads overlapping them see them in some order.
    let ok = [
        bank_op(1, transfer(0, 1, 5), BankOutput::Transfer(true), 0, 100),
        bank_op(2, transfer(1, 2, 12), BankOutput::Transfer(true), 0, 100),
        bank_op(3, BankInput::Read, balances([5, 15, 10]), 10, 20),
        bank_op(3, BankInput::Read, balances([5, 3, 22]), 30, 40),
        bank_op(3, transfer(2, 0, 30), BankOutput::Transfer(false), 110, 120),
    ];
    assert_eq!(check::<Bank>(&ok), CheckResult::Ok);
    // The second transfer could only succeed after the first, so it cannot have been
    // seen alone; and a read that loses money is never possible.
    for bad in [balances([10, 0, 20]), balances([5, 15, 9])] {
        let history = [
            bank_op(1, transfer(0, 1, 5), BankOutput::Transfer(true), 0, 100),
            bank_op(2, transfer(1, 2, 12), BankOutput::Transfer(true), 0, 100),
            bank_op(3, BankInput::Read, bad, 10, 20),
        ];
        assert!(
            matches!(check::<Bank>(&history), CheckResult::Violation { ref partition, .. } if partition == "()"),
            "{history:?}"
        );
    }
    // A timed-out transfer may have been applied.
    let history = [
        Operation {
            client: 1,
            input: transfer(0, 2, 10),
            output: None,
            call: 0,
            ret: None,
        },
        bank_op(2, BankInput::Read, balances([0, 10, 20]), 50, 60),
    ];
    assert_eq!(check::<Bank>(&history), CheckResult::Ok);
}
