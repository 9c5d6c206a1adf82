//! Writes unique, sealed command callbacks for the load benchmark (bench/run.sh):
//! one per line, `PATH?QUERY<TAB>BODY`. Every plaintext differs, so none dedupes.
//! As WeCom's do, each carries the time it was sent: from now on, one second per
//! 30,000 callbacks (about the rate they are taken at).
//!
//! Usage: bench_callbacks TOKEN AES_KEY SUITE_ID COUNT TAG OUT_FILE

use std::io::{BufWriter, Write};

use wecom_provider::crypto::CallbackKeys;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, token, aes_key, suite_id, count, tag, out] = args.as_slice() else {
        eprintln!("usage: bench_callbacks TOKEN AES_KEY SUITE_ID COUNT TAG OUT_FILE");
        std::process::exit(2);
    };
    let keys = CallbackKeys::new(token, aes_key).expect("valid callback keys");
    let count: usize = count.parse().expect("COUNT is a number");
    let mut file = BufWriter::new(std::fs::File::create(out)?);
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs();
    for i in 0..count {
        let timestamp = start + i as u64 / 30_000;
        // A typical instruction callback, about 330 bytes of plaintext.
        let plaintext = format!(
            "<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId><AuthCorpId><![CDATA[wpBenchCorp]]></AuthCorpId><InfoType><![CDATA[change_contact]]></InfoType><TimeStamp>{timestamp}</TimeStamp><ChangeType><![CDATA[update_user]]></ChangeType><UserID><![CDATA[{tag}-{i}]]></UserID><Department><![CDATA[1,2,3]]></Department></xml>"
        );
        let (timestamp, nonce) = (timestamp.to_string(), i.to_string());
        let (signature, encrypted) = keys.seal(&timestamp, &nonce, plaintext.as_bytes(), suite_id);
        writeln!(
            file,
            "/callback/{suite_id}/command?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}\t<xml><ToUserName><![CDATA[{suite_id}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
        )?;
    }
    file.flush()
}
