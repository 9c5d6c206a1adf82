//! JS-SDK signatures (PROTOCOL.md §1.8, PROTOCOL-2.md §4): SHA-1 of
//! `jsapi_ticket=…&noncestr=…&timestamp=…&url=…`, lowercase hex, in this order and
//! not URL-encoded; the URL is the page's without its `#fragment`.

use sha1::{Digest, Sha1};
use url::Url;

/// A page URL to sign: absolute http(s), kept as the page has it (not normalised),
/// without its fragment.
#[derive(Debug, Clone)]
pub struct PageUrl(String);

impl PageUrl {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let page = signed_url(text);
        match Url::parse(page) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(PageUrl(page.to_owned())),
            _ => Err("url must be an absolute http or https URL"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The page URL as it is signed: everything before the first `#`.
pub fn signed_url(url: &str) -> &str {
    url.split('#').next().unwrap_or(url)
}

pub fn signature(ticket: &str, nonce: &str, timestamp: i64, url: &str) -> String {
    let text = format!("jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={}", signed_url(url));
    hex::encode(Sha1::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_vector_signs_to_its_digest() {
        let ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";
        let signed = signature(ticket, "Wm3WZYTPz0wzccnW", 1_414_587_457, "http://mp.weixin.qq.com?params=value");
        assert_eq!(signed, "0f9de62fce790f9a083d5c99e95740ceb90c27ed");
    }

    #[test]
    fn only_http_and_https_pages_are_signed() {
        assert_eq!(PageUrl::parse("https://app.example/h5?a=1#x").unwrap().as_str(), "https://app.example/h5?a=1");
        for bad in ["ftp://app.example/", "javascript:alert(1)", "/relative", "", "http://"] {
            assert!(PageUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_fragment_is_not_signed() {
        let ticket = "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg";
        let with_fragment =
            signature(ticket, "Wm3WZYTPz0wzccnW", 1_414_587_457, "http://mp.weixin.qq.com?params=value#/page?x=1");
        assert_eq!(with_fragment, "0f9de62fce790f9a083d5c99e95740ceb90c27ed");
    }
}
