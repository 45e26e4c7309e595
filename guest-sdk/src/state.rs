//! Keyed state handles. The host stores the state per key group, so it moves with its keys when a
//! job is rescaled; values are kept in the compact binary encoding (postcard).

use crate::context::Appender;
use crate::{StateError, backend};
use serde::{Serialize, de::DeserializeOwned};
use std::marker::PhantomData;

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StateError> {
    postcard::to_allocvec(value)
        .map_err(|e| StateError::Invalid(format!("value does not encode: {e}")))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|e| StateError::Decode(e.to_string()))
}

/// One value of type `T` per key, under a state name.
#[derive(Debug, Clone)]
pub struct ValueState<T> {
    name: String,
    _type: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    /// The value state called `name`; operators usually create their handles in `open`.
    pub fn new(name: impl Into<String>) -> Self {
        ValueState {
            name: name.into(),
            _type: PhantomData,
        }
    }

    /// The value for `key`, if one was set.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, StateError> {
        match backend::with(|b| b.value_get(&self.name, key.as_ref()))? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Sets the value for `key`.
    pub fn set(&self, key: impl AsRef<[u8]>, value: &T) -> Result<(), StateError> {
        let bytes = encode(value)?;
        backend::with(|b| b.value_set(&self.name, key.as_ref(), &bytes))
    }

    /// Removes the value for `key`.
    pub fn clear(&self, key: impl AsRef<[u8]>) -> Result<(), StateError> {
        backend::with(|b| b.value_clear(&self.name, key.as_ref()))
    }

    /// The values for many keys, in one host call (see [`Operator::process_batch`](crate::Operator::process_batch)).
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<T>>, StateError> {
        let mut buf = Vec::with_capacity(keys.iter().map(|k| k.as_ref().len() + 4).sum());
        for k in keys {
            weir_batch::lengths::push(&mut buf, Some(k.as_ref()));
        }
        let values = backend::with(|b| b.value_get_many(&self.name, &buf))?;
        // A plain loop into a vector sized up front: `collect` over results grows it by copies.
        let mut out = Vec::with_capacity(keys.len());
        for v in weir_batch::lengths::iter(&values) {
            out.push(match v.map_err(|e| StateError::Decode(e.to_string()))? {
                Some(bytes) => Some(decode(bytes)?),
                None => None,
            });
        }
        if out.len() != keys.len() {
            return Err(StateError::Decode(format!(
                "asked for {} values, got {}",
                keys.len(),
                out.len()
            )));
        }
        Ok(out)
    }

    /// Sets (`Some`) or clears (`None`) the values of many keys, in one host call.
    pub fn set_many<K: AsRef<[u8]>>(&self, entries: &[(K, Option<T>)]) -> Result<(), StateError> {
        let mut buf = Vec::new();
        for (k, v) in entries {
            weir_batch::lengths::push(&mut buf, Some(k.as_ref()));
            match v {
                Some(v) => {
                    // Encoded in place after a length that is filled in once known.
                    let at = buf.len();
                    weir_batch::extend(&mut buf, &[0; 4]);
                    postcard::serialize_with_flavor(v, Appender(&mut buf))
                        .map_err(|e| StateError::Invalid(format!("value does not encode: {e}")))?;
                    let len = (buf.len() - at - 4) as u32;
                    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
                }
                None => weir_batch::lengths::push(&mut buf, None),
            }
        }
        backend::with(|b| b.value_set_many(&self.name, &buf))
    }
}

/// A map from `K` to `V` per key, under a state name.
#[derive(Debug, Clone)]
pub struct MapState<K, V> {
    name: String,
    _type: PhantomData<fn() -> (K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<K, V> {
    /// The map state called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MapState {
            name: name.into(),
            _type: PhantomData,
        }
    }

    /// The entry for `map_key` in `key`'s map.
    pub fn get(&self, key: impl AsRef<[u8]>, map_key: &K) -> Result<Option<V>, StateError> {
        let mk = encode(map_key)?;
        match backend::with(|b| b.map_get(&self.name, key.as_ref(), &mk))? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Puts `map_key -> value` into `key`'s map.
    pub fn put(&self, key: impl AsRef<[u8]>, map_key: &K, value: &V) -> Result<(), StateError> {
        let (mk, v) = (encode(map_key)?, encode(value)?);
        backend::with(|b| b.map_put(&self.name, key.as_ref(), &mk, &v))
    }

    /// Removes `map_key` from `key`'s map.
    pub fn remove(&self, key: impl AsRef<[u8]>, map_key: &K) -> Result<(), StateError> {
        let mk = encode(map_key)?;
        backend::with(|b| b.map_remove(&self.name, key.as_ref(), &mk))
    }

    /// All entries of `key`'s map, ordered by the encoded map key.
    pub fn entries(&self, key: impl AsRef<[u8]>) -> Result<Vec<(K, V)>, StateError> {
        let raw = backend::with(|b| b.map_entries(&self.name, key.as_ref()))?;
        raw.iter()
            .map(|(k, v)| Ok((decode(k)?, decode(v)?)))
            .collect()
    }

    /// Removes every entry of `key`'s map.
    pub fn clear(&self, key: impl AsRef<[u8]>) -> Result<(), StateError> {
        backend::with(|b| b.map_clear(&self.name, key.as_ref()))
    }
}
