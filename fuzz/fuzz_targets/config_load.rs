//! Config loader, fed arbitrary text as a hand-edited TOML file would be.
//!
//! The input, when it is UTF-8, is loaded as a name server's and as a broker's config with
//! `from_toml_str` (parse, unknown-key check with hints, per-key typing, `validate()`).
//! Checks, besides never panicking: an error renders as text and names a key or a syntax
//! position; a config that loads is written back to TOML, and that text loads to the same
//! config; a broker config that loads is also what plain `toml::from_str` reads.

#![no_main]

use actimq::internals::config::{BrokerConfig, ConfigError, NamesrvConfig, TEXT_SOURCE};
use libfuzzer_sys::fuzz_target;

fn check_error(e: &ConfigError) {
    let text = e.to_string();
    match e.key() {
        Some(key) => assert!(text.contains(key), "{text}"),
        None => {
            assert_eq!(e.path().and_then(|p| p.to_str()), Some(TEXT_SOURCE));
            assert!(text.starts_with(TEXT_SOURCE), "{text}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    match NamesrvConfig::from_toml_str(text) {
        Ok(config) => {
            let written = toml::to_string(&config).expect("a loaded config writes as TOML");
            let again = NamesrvConfig::from_toml_str(&written).expect("written config loads");
            assert_eq!(again, config);
            let _ = config.listen_addr();
        }
        Err(e) => check_error(&e),
    }

    match BrokerConfig::from_toml_str(text) {
        Ok(config) => {
            let written = toml::to_string(&config).expect("a loaded config writes as TOML");
            let again = BrokerConfig::from_toml_str(&written).expect("written config loads");
            assert_eq!(again, config);
            let plain: BrokerConfig = toml::from_str(text).expect("toml::from_str agrees");
            assert_eq!(plain, config);
            let _ = (config.listen_addr(), config.advertised_addr());
            let _ = config.namesrv_addrs();
            let _ = config.store.delete_hours();
        }
        Err(e) => check_error(&e),
    }
});
