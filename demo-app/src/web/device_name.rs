//! The name people give the device behind a `User-Agent`: "Chrome on Linux", "Safari on
//! iPhone", "Firefox on Windows", "curl". The agent is read by `woothee`, which knows browsers,
//! systems, crawlers and HTTP libraries; this module only words what it found.

use woothee::parser::{Parser, WootheeResult};

/// What woothee says of what it does not know.
const UNKNOWN: &str = woothee::woothee::VALUE_UNKNOWN;

/// What woothee names a program that fetches over HTTP (curl, wget, a language's library),
/// whose own name it gives as the version.
const HTTP_LIBRARY: &str = "HTTP Library";

/// The longest name taken from an agent woothee does not know, in characters.
const MAX_UNKNOWN_NAME: usize = 40;

/// A short name for the device behind `user_agent`; "Unknown device" when there is none.
pub(crate) fn device_name(user_agent: Option<&str>) -> String {
    let Some(agent) = user_agent.map(str::trim).filter(|agent| !agent.is_empty()) else {
        return "Unknown device".to_owned();
    };
    match Parser::new().parse(agent) {
        Some(found) if found.name == HTTP_LIBRARY && found.version != UNKNOWN => {
            found.version.to_owned()
        }
        Some(found) if found.name != UNKNOWN => {
            let browser = browser(&found, agent);
            match system(found.os) {
                Some(system) => format!("{browser} on {system}"),
                None => browser.to_owned(),
            }
        }
        _ => product(agent),
    }
}

/// The browser's name. Headless Chrome says `HeadlessChrome/` where Chrome says `Chrome/`,
/// and woothee takes it for Chrome; a session opened by a script is worth telling apart.
fn browser<'a>(found: &WootheeResult<'a>, agent: &str) -> &'a str {
    if found.name == "Chrome" && agent.contains("HeadlessChrome/") {
        "Headless Chrome"
    } else {
        found.name
    }
}

/// The system as people say it: "Windows" for every version of it, "macOS".
fn system(os: &str) -> Option<&str> {
    match os {
        UNKNOWN => None,
        "Mac OSX" => Some("macOS"),
        os if os.starts_with("Windows") => Some("Windows"),
        os => Some(os),
    }
}

/// The first word of an agent woothee does not know (`python-requests/2.31`), cut short.
fn product(agent: &str) -> String {
    let word = agent.split_whitespace().next().unwrap_or(agent);
    match word.char_indices().nth(MAX_UNKNOWN_NAME) {
        Some((cut, _)) => format!("{}…", &word[..cut]),
        None => word.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_named_after_their_browser_and_system() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 HeadlessChrome/120.0.0.0 Safari/537.36",
                "Headless Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/120.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
                "Firefox on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            ("curl/8.5.0", "curl"),
            ("python-requests/2.31 (something)", "python-requests/2.31"),
        ];
        for (agent, name) in cases {
            assert_eq!(device_name(Some(agent)), name, "{agent}");
        }
    }

    #[test]
    fn no_agent_is_an_unknown_device() {
        assert_eq!(device_name(None), "Unknown device");
        assert_eq!(device_name(Some("")), "Unknown device");
        assert_eq!(device_name(Some("  ")), "Unknown device");
    }

    #[test]
    fn a_long_garbage_agent_gets_a_short_name() {
        let garbage: String = (0..10 * 1024)
            .map(|i| char::from(b'!' + u8::try_from(i % 90).unwrap_or(0)))
            .collect();
        let name = device_name(Some(&garbage));
        assert!(name.chars().count() <= MAX_UNKNOWN_NAME + 1, "{name}");
        let spaced = "x ".repeat(5 * 1024);
        assert_eq!(device_name(Some(&spaced)), "x");
    }
}
