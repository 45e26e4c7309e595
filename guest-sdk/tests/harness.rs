//! The SDK's pieces under its native harness: typed records, JSON and binary values, side
//! outputs, value and map state, config and logging.

use serde::{Deserialize, Serialize};
use weir_guest_sdk::log::{self, Level};
use weir_guest_sdk::prelude::*;
use weir_guest_sdk::testing::Harness;

#[derive(Deserialize)]
struct Settings {
    min_amount: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Order {
    user: String,
    amount: u64,
}

/// Keeps, per user, the total (value state) and the amounts by item (map state); emits small
/// orders to the side output `small`.
struct Totals {
    min: u64,
    totals: ValueState<u64>,
    items: MapState<String, u64>,
}

impl Operator for Totals {
    fn open(_ctx: &mut Context, config: Config) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        log::info("opened");
        Ok(Totals {
            min: s.min_amount,
            totals: ValueState::new("total"),
            items: MapState::new("items"),
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let order: Order = record.value_json()?;
        if order.amount < self.min {
            ctx.emit_to("small", &order.user, order.amount.to_string());
            return Ok(());
        }
        let total = self.totals.get(&order.user)?.unwrap_or(0) + order.amount;
        self.totals.set(&order.user, &total)?;
        let item = record.key_str()?.to_string();
        let before = self.items.get(&order.user, &item)?.unwrap_or(0);
        self.items
            .put(&order.user, &item, &(before + order.amount))?;
        ctx.emit_bin(&order.user, &(order.user.clone(), total))?;
        Ok(())
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), Error> {
        ctx.emit_json("done", &"closed")
    }
}

fn order(item: &str, user: &str, amount: u64) -> (String, String) {
    (
        item.to_string(),
        serde_json::to_string(&Order {
            user: user.into(),
            amount,
        })
        .unwrap(),
    )
}

#[test]
fn state_side_outputs_and_typed_values() {
    let mut h = Harness::<Totals>::open(r#"{"min_amount": 10}"#).unwrap();
    let input = [
        order("book", "ann", 30),
        order("pen", "ann", 5),
        order("book", "bob", 12),
        order("lamp", "ann", 20),
    ];
    let records: Vec<Record<'_>> = input.iter().map(|(k, v)| Record::new(k, v)).collect();
    h.process(&records).unwrap();
    h.close().unwrap();

    let out = h.take_output();
    let main: Vec<(String, u64)> = out
        .iter()
        .filter(|e| e.output.is_none() && e.key != b"done")
        .map(|e| postcard::from_bytes(&e.value).unwrap())
        .collect();
    assert_eq!(
        main,
        [
            ("ann".to_string(), 30),
            ("bob".to_string(), 12),
            ("ann".to_string(), 50)
        ]
    );
    let small: Vec<_> = out
        .iter()
        .filter(|e| e.output.as_deref() == Some("small"))
        .map(|e| e.value_str())
        .collect();
    assert_eq!(small, ["5"]);
    assert_eq!(out.last().unwrap().value_str(), "\"closed\"");

    assert_eq!(h.value::<u64>("total", "ann"), Some(50));
    assert_eq!(h.logs(), [(Level::Info, "opened".to_string())]);
}

#[test]
fn bad_config_and_bad_values_are_errors_with_messages() {
    let err = Harness::<Totals>::open(r#"{"min": 1}"#).err().unwrap();
    assert!(err.message().contains("invalid operator config"), "{err}");
    let mut h = Harness::<Totals>::open(r#"{"min_amount": 1}"#).unwrap();
    let err = h.process(&[Record::new("k", "not json")]).unwrap_err();
    assert!(err.message().contains("not the expected JSON"), "{err}");
}

#[test]
fn map_state_entries_come_back_ordered_and_removable() {
    struct Probe;
    impl Operator for Probe {
        fn open(_: &mut Context, _: Config) -> Result<Self, Error> {
            Ok(Probe)
        }
        fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
            let m: MapState<u32, String> = MapState::new("m");
            for (i, word) in record.value_str()?.split(' ').enumerate() {
                m.put(record.key, &(i as u32), &word.to_string())?;
            }
            m.remove(record.key, &1)?;
            let entries = m.entries(record.key)?;
            ctx.emit(
                record.key,
                entries
                    .iter()
                    .map(|(i, w)| format!("{i}={w}"))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            m.clear(record.key)?;
            assert!(m.entries(record.key)?.is_empty());
            Ok(())
        }
    }
    let mut h = Harness::<Probe>::open("").unwrap();
    h.process(&[Record::new("k", "a b c")]).unwrap();
    assert_eq!(h.output_values(), ["0=a,2=c"]);
}

#[test]
fn a_value_that_fails_to_encode_emits_nothing_and_keeps_what_was_emitted() {
    struct Encoder;
    impl Operator for Encoder {
        fn open(_: &mut Context, _: Config) -> Result<Self, Error> {
            Ok(Encoder)
        }
        fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
            ctx.emit_bin(record.key, &record.value_str()?)?;
            // JSON objects need string keys: this one fails halfway through encoding.
            let bad: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
            assert!(ctx.emit_json(record.key, &bad).is_err());
            ctx.emit_json(record.key, &record.value_str()?)
        }
    }
    let mut h = Harness::<Encoder>::open("").unwrap();
    h.process(&[Record::new("k", "v")]).unwrap();
    let out = h.take_output();
    assert_eq!(out.len(), 2);
    assert_eq!(postcard::from_bytes::<&str>(&out[0].value).unwrap(), "v");
    assert_eq!(out[1].value_str(), "\"v\"");
}

#[test]
fn batched_state_reads_and_writes_keep_each_key_s_value() {
    /// Appends each record's value to its key's list, reading and writing state once per batch.
    struct Lists {
        lists: ValueState<Vec<String>>,
    }
    impl Operator for Lists {
        fn open(_: &mut Context, _: Config) -> Result<Self, Error> {
            Ok(Lists {
                lists: ValueState::new("lists"),
            })
        }
        fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
            self.process_batch(ctx, &[record])
        }
        fn process_batch(
            &mut self,
            ctx: &mut Context,
            records: &[Record<'_>],
        ) -> Result<(), Error> {
            let distinct = weir_guest_sdk::keys::Distinct::of(records);
            let mut lists: Vec<Option<Vec<String>>> = self.lists.get_many(distinct.keys())?;
            for (r, &i) in records.iter().zip(distinct.positions()) {
                let list = lists[i as usize].get_or_insert_with(Vec::new);
                list.push(r.value_str()?.to_string());
                ctx.emit(r.key, list.join("+"));
            }
            // "clear" as a value clears the key's state.
            let updates: Vec<(&[u8], Option<Vec<String>>)> = distinct
                .keys()
                .iter()
                .copied()
                .zip(lists)
                .map(|(k, l)| (k, l.filter(|l| l.last().is_none_or(|v| v != "clear"))))
                .collect();
            self.lists.set_many(&updates)?;
            Ok(())
        }
    }
    let mut h = Harness::<Lists>::open("").unwrap();
    h.process(&[
        Record::new("a", "1"),
        Record::new("bb", "2"),
        Record::new("a", "3"),
        Record::new("a-much-longer-key-than-sixteen-bytes", "4"),
    ])
    .unwrap();
    h.process(&[Record::new("bb", "5"), Record::new("a", "clear")])
        .unwrap();
    h.process(&[Record::new("a", "6")]).unwrap();
    assert_eq!(
        h.output_values(),
        ["1", "2", "1+3", "4", "2+5", "1+3+clear", "6"]
    );
    assert_eq!(
        h.value::<Vec<String>>("lists", "bb"),
        Some(vec!["2".into(), "5".into()])
    );
    assert_eq!(
        h.value::<Vec<String>>("lists", "a-much-longer-key-than-sixteen-bytes"),
        Some(vec!["4".into()])
    );
}
