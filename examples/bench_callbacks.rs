//! Writes unique, sealed command callbacks for the load benchmarks (bench/run.sh):
//! one per line, `PATH?QUERY<TAB>BODY`. Every plaintext differs, so none dedupes.
//!
//! Each is a `change_contact`/`update_user` as WeCom sends it to a third-party app:
//! indented XML with a Chinese name, position and extended attributes, about 1.4 KB
//! of plaintext (2 KB on the wire). As WeCom's do, each carries the time it was sent:
//! `advancing` stamps one second per 20,000 callbacks from now (a burst at that rate),
//! `same` stamps them all with one second (one corp's batch import). `small` is the
//! 330-byte message of the round-one bench, for comparing with its figures. `install`
//! is an install wave for bench/cluster.sh: a suite_ticket, then COUNT - 1 create_auth
//! whose auth codes are `code-TAG-N`.
//!
//! Usage: bench_callbacks TOKEN AES_KEY SUITE_ID COUNT TAG OUT_FILE [advancing|same] [realistic|small|install]

use std::io::{BufWriter, Write};

use wecom_provider::crypto::CallbackKeys;

const SURNAMES: [&str; 12] = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "欧阳", "司马"];
const GIVEN_NAMES: [&str; 10] = ["伟", "芳", "秀英", "敏", "静", "丽娟", "强", "磊", "洋", "婷婷"];
const POSITIONS: [&str; 6] = ["产品经理", "销售代表", "高级工程师", "客户成功经理", "财务主管", "区域总监"];

fn realistic(suite_id: &str, timestamp: u64, tag: &str, i: usize) -> String {
    let name = format!("{}{}", SURNAMES[i % SURNAMES.len()], GIVEN_NAMES[i / SURNAMES.len() % GIVEN_NAMES.len()]);
    let position = POSITIONS[i % POSITIONS.len()];
    let mobile = 13_800_000_000u64 + (i as u64 % 100_000_000);
    format!(
        "<xml>
\t<SuiteId><![CDATA[{suite_id}]]></SuiteId>
\t<AuthCorpId><![CDATA[wpBenchCorp]]></AuthCorpId>
\t<InfoType><![CDATA[change_contact]]></InfoType>
\t<TimeStamp>{timestamp}</TimeStamp>
\t<ChangeType><![CDATA[update_user]]></ChangeType>
\t<UserID><![CDATA[{tag}-{i}]]></UserID>
\t<OpenUserID><![CDATA[woAJ2GCAAA{i:0>12}ACAAAA]]></OpenUserID>
\t<Name><![CDATA[{name}]]></Name>
\t<Department><![CDATA[1,{dept},{team}]]></Department>
\t<MainDepartment>{dept}</MainDepartment>
\t<IsLeaderInDept><![CDATA[0,0,{leader}]]></IsLeaderInDept>
\t<DirectLeader><![CDATA[{tag}-leader-{dept}]]></DirectLeader>
\t<Position><![CDATA[{position}]]></Position>
\t<Mobile>{mobile}</Mobile>
\t<Gender>{gender}</Gender>
\t<Email><![CDATA[user{i}@bench-corp.example]]></Email>
\t<BizMail><![CDATA[user{i}@bench-corp.wecom.work]]></BizMail>
\t<Status>1</Status>
\t<Avatar><![CDATA[http://wx.qlogo.cn/mmopen/ajNVdqHZLLA3WJ6DSZUfiakYe37PKnQhBIeOQBO4czqrnZDS79FH5Wm5m4X69TBicnHFlhiafvDwklOpZeXYQQ2icg/0]]></Avatar>
\t<Alias><![CDATA[{name}（{position}）]]></Alias>
\t<Telephone><![CDATA[020-{phone:0>8}]]></Telephone>
\t<Address><![CDATA[广东省深圳市南山区科技园科苑路{building}号]]></Address>
\t<ExtAttr>
\t\t<Item>
\t\t<Name><![CDATA[爱好]]></Name>
\t\t<Type>0</Type>
\t\t<Text>
\t\t\t<Value><![CDATA[旅游、摄影]]></Value>
\t\t</Text>
\t\t</Item>
\t\t<Item>
\t\t<Name><![CDATA[工号]]></Name>
\t\t<Type>1</Type>
\t\t<Web>
\t\t\t<Title><![CDATA[员工主页]]></Title>
\t\t\t<Url><![CDATA[https://bench-corp.example/staff/{i}]]></Url>
\t\t</Web>
\t\t</Item>
\t</ExtAttr>
</xml>",
        dept = 2 + i % 40,
        team = 100 + i % 700,
        leader = i % 9 / 8,
        gender = 1 + i % 2,
        phone = i % 100_000_000,
        building = 1 + i % 300,
    )
}

fn small(suite_id: &str, timestamp: u64, tag: &str, i: usize) -> String {
    format!(
        "<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId><AuthCorpId><![CDATA[wpBenchCorp]]></AuthCorpId><InfoType><![CDATA[change_contact]]></InfoType><TimeStamp>{timestamp}</TimeStamp><ChangeType><![CDATA[update_user]]></ChangeType><UserID><![CDATA[{tag}-{i}]]></UserID><Department><![CDATA[1,2,3]]></Department></xml>"
    )
}

fn install(suite_id: &str, timestamp: u64, tag: &str, i: usize) -> String {
    if i == 0 {
        return format!(
            "<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId><InfoType><![CDATA[suite_ticket]]></InfoType><TimeStamp>{timestamp}</TimeStamp><SuiteTicket><![CDATA[ticket-{tag}]]></SuiteTicket></xml>"
        );
    }
    format!(
        "<xml><SuiteId><![CDATA[{suite_id}]]></SuiteId><AuthCode><![CDATA[code-{tag}-{i}]]></AuthCode><InfoType><![CDATA[create_auth]]></InfoType><TimeStamp>{timestamp}</TimeStamp></xml>"
    )
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (token, aes_key, suite_id, count, tag, out) = match args.as_slice() {
        [_, token, aes_key, suite_id, count, tag, out, ..] => (token, aes_key, suite_id, count, tag, out),
        _ => {
            eprintln!(
                "usage: bench_callbacks TOKEN AES_KEY SUITE_ID COUNT TAG OUT_FILE [advancing|same] [realistic|small|install]"
            );
            std::process::exit(2);
        }
    };
    let per_second = match args.get(7).map_or("advancing", String::as_str) {
        "advancing" => 20_000,
        "same" => usize::MAX,
        other => panic!("stamps are advancing or same, not {other}"),
    };
    let shape: fn(&str, u64, &str, usize) -> String = match args.get(8).map_or("realistic", String::as_str) {
        "realistic" => realistic,
        "small" => small,
        "install" => install,
        other => panic!("shape is realistic, small or install, not {other}"),
    };
    let keys = CallbackKeys::new(token, aes_key).expect("valid callback keys");
    let count: usize = count.parse().expect("COUNT is a number");
    let mut file = BufWriter::new(std::fs::File::create(out)?);
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs();
    for i in 0..count {
        let timestamp = start + (i / per_second) as u64;
        let plaintext = shape(suite_id, timestamp, tag, i);
        let (timestamp, nonce) = (timestamp.to_string(), i.to_string());
        let (signature, encrypted) = keys.seal(&timestamp, &nonce, plaintext.as_bytes(), suite_id);
        writeln!(
            file,
            "/callback/{suite_id}/command?msg_signature={signature}&timestamp={timestamp}&nonce={nonce}\t<xml><ToUserName><![CDATA[{suite_id}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
        )?;
    }
    file.flush()
}
