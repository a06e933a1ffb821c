//! Reading a config file into a TOML table and splitting it by the keys each struct declares
//! to serde, refusing unknown keys with the closest known one as a hint. Never decides what
//! a value means; that is the parent module's.

use super::*;

pub(super) fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_table(&text, path)
}

/// Parses TOML `text`; a syntax error names `path` with the line and column.
pub(super) fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    toml::from_str::<toml::Table>(text).map_err(|e| {
        let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().replace('\n', "; "),
        }
    })
}

/// 1-based line and character column of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The keys a struct's derived `Deserialize` accepts, as it declares them to serde (so the
/// list can never drift from the struct).
pub(super) fn struct_keys<T>(
    deserialize: fn(KeyCollector) -> Result<T, de::value::Error>,
) -> &'static [&'static str] {
    let slot = Rc::new(Cell::new(&[][..]));
    let _ = deserialize(KeyCollector(Rc::clone(&slot)));
    slot.get()
}

pub(super) fn namesrv_keys() -> &'static [&'static str] {
    struct_keys(NamesrvConfig::deserialize)
}

pub(super) fn broker_keys() -> &'static [&'static str] {
    struct_keys(BrokerConfig::deserialize)
}

pub(super) fn store_keys() -> &'static [&'static str] {
    struct_keys(StoreConfig::deserialize)
}

/// A deserializer that only records the field list a struct asks for, then stops.
pub(super) struct KeyCollector(Rc<Cell<&'static [&'static str]>>);

impl<'de> Deserializer<'de> for KeyCollector {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.set(fields);
        Err(de::Error::custom("fields collected"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Rejects the first key (in key order) that none of `known` holds, with a hint.
pub(super) fn check_keys(
    table: &toml::Table,
    known: &[&[&str]],
    foreign: fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let Some(key) = table
        .keys()
        .find(|k| !known.iter().any(|keys| keys.contains(&k.as_str())))
    else {
        return Ok(());
    };
    let hint = foreign(key).or_else(|| {
        closest(key, known.iter().flat_map(|keys| keys.iter().copied()))
            .map(|k| format!("did you mean '{k}'?"))
    });
    Err(ConfigError::UnknownKey {
        path: None,
        key: key.clone(),
        hint,
    })
}

pub(super) fn foreign_for_broker(key: &str) -> Option<String> {
    if key == "store" {
        return Some("store keys sit at the top level of the broker file, not in a table".into());
    }
    (namesrv_keys().contains(&key)).then(|| format!("'{key}' is a name server setting"))
}

pub(super) fn foreign_for_namesrv(key: &str) -> Option<String> {
    (broker_keys().contains(&key) || store_keys().contains(&key))
        .then(|| format!("'{key}' is a broker setting"))
}

/// Deserializes one part strictly. Each key is first tried alone, so a bad value is
/// reported with its key whatever the deserializer's message says.
pub(super) fn part_from_table<T: DeserializeOwned>(
    table: toml::Table,
    deserialize: fn(toml::Value) -> Result<T, toml::de::Error>,
) -> Result<T, ConfigError> {
    for (key, value) in &table {
        let single = toml::Table::from_iter([(key.clone(), value.clone())]);
        if let Err(e) = deserialize(toml::Value::Table(single)) {
            return Err(ConfigError::BadValue {
                path: None,
                key: key.clone(),
                reason: describe(e.message()),
            });
        }
    }
    let keys: Vec<String> = table.keys().cloned().collect();
    deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::BadValue {
        path: None,
        key: keys
            .into_iter()
            .find(|k| e.message().contains(&format!("`{k}`")))
            .unwrap_or_else(|| "?".to_owned()),
        reason: describe(e.message()),
    })
}

/// Rewords serde's "invalid type: X, expected Y" as "expected Y, found X".
pub(super) fn describe(message: &str) -> String {
    let message = message.trim();
    for lead in ["invalid type: ", "invalid value: ", "unknown variant "] {
        if let Some(rest) = message.strip_prefix(lead) {
            if let Some((found, expected)) = rest.rsplit_once(", expected ") {
                return format!("expected {expected}, found {found}");
            }
        }
    }
    message.to_owned()
}

/// The known key nearest to `key` (case, `_` and `-` ignored, so RocketMQ's camelCase
/// names map to ours), if it is near enough to be a likely typo.
pub(super) fn closest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = norm(key);
    let (distance, best) = known
        .map(|k| (edit_distance(&wanted, &norm(k)), k))
        .min_by_key(|(d, _)| *d)?;
    (distance <= (wanted.len() / 4).max(2)).then_some(best)
}

/// Levenshtein distance.
pub(super) fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
