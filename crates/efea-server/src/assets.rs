//! The web page, compiled into the binary. Files are looked up by exact name in a fixed table,
//! so no request path ever reaches the file system: `..`, encoded slashes and absolute paths
//! find nothing.

/// `(name, content type, body)` of every asset under `/assets/`.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../assets/favicon.svg"),
    ),
];

/// The page at `/`.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");

/// The content type and body of asset `name`, if there is one by that exact name.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(asset, _, _)| *asset == name)
        .map(|&(_, content_type, body)| (content_type, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_names_resolve() {
        assert!(asset("app.js").is_some());
        for name in [
            "../Cargo.toml",
            "/etc/passwd",
            "app.js/..",
            "./app.js",
            "APP.JS",
            "",
        ] {
            assert!(asset(name).is_none(), "{name}");
        }
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for reference in ["/assets/app.js", "/assets/style.css", "/assets/favicon.svg"] {
            assert!(INDEX_HTML.contains(reference), "{reference}");
        }
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
    }
}
