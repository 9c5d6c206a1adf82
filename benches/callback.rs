//! The callback hot path without I/O: signature check + decrypt + receiveid check
//! at WeCom's message sizes, and XML parsing of every message kind. bench/run.sh
//! reads the estimates and sets them beside `openssl speed` on the same machine.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wecom_provider::crypto::CallbackKeys;
use wecom_provider::wecom::callback::{self, message_from, parse_envelope};

const TOKEN: &str = "QDG6eK";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const RECEIVE_ID: &str = "wwbenchsuite";
const SIZES: [(usize, &str); 4] = [(200, "200B"), (1024, "1KiB"), (4096, "4KiB"), (16384, "16KiB")];

/// A change_contact callback padded to `size` bytes of plaintext.
fn plaintext(size: usize) -> String {
    let head = "<xml><SuiteId><![CDATA[wwbenchsuite]]></SuiteId><AuthCorpId><![CDATA[wpBenchCorp]]></AuthCorpId><InfoType><![CDATA[change_contact]]></InfoType><TimeStamp>1700000000</TimeStamp><ChangeType><![CDATA[update_user]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID><Position><![CDATA[";
    let tail = "]]></Position></xml>";
    let filler = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(filler))
}

fn open(c: &mut Criterion) {
    let keys = CallbackKeys::new(TOKEN, AES_KEY).expect("bench keys");
    let mut group = c.benchmark_group("open");
    for (size, name) in SIZES {
        let message = plaintext(size);
        let (signature, encrypted) = keys.seal("1700000000", "123456", message.as_bytes(), RECEIVE_ID);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &encrypted, |b, encrypted| {
            b.iter(|| {
                let opened = keys.open(&signature, "1700000000", "123456", black_box(encrypted)).expect("opens");
                assert!(opened.receive_id == RECEIVE_ID);
                opened
            })
        });
    }
    group.finish();
}

fn parse(c: &mut Criterion) {
    let kinds = [
        (
            "suite_ticket",
            "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><InfoType><![CDATA[suite_ticket]]></InfoType><TimeStamp>1403610513</TimeStamp><SuiteTicket><![CDATA[asdfasfdasdfasdf]]></SuiteTicket></xml>",
        ),
        (
            "create_auth",
            "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><AuthCode><![CDATA[AUTHCODE]]></AuthCode><InfoType><![CDATA[create_auth]]></InfoType><TimeStamp>1403610513</TimeStamp><State><![CDATA[123]]></State></xml>",
        ),
        (
            "change_auth",
            "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><InfoType><![CDATA[change_auth]]></InfoType><TimeStamp>1403610513</TimeStamp><AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId><State><![CDATA[abc]]></State></xml>",
        ),
        (
            "cancel_auth",
            "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><InfoType><![CDATA[cancel_auth]]></InfoType><TimeStamp>1403610513</TimeStamp><AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId></xml>",
        ),
        (
            "reset_permanent_code",
            "<xml><SuiteId><![CDATA[dk4asffe99e54c0f4c]]></SuiteId><AuthCode><![CDATA[AUTHCODE]]></AuthCode><InfoType><![CDATA[reset_permanent_code]]></InfoType><TimeStamp>1403610513</TimeStamp></xml>",
        ),
        (
            "change_contact",
            "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId><InfoType><![CDATA[change_contact]]></InfoType><TimeStamp>1403610513</TimeStamp><ChangeType><![CDATA[create_user]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID><OpenUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACH71w]]></OpenUserID><Department><![CDATA[1,2,3]]></Department><MainDepartment>1</MainDepartment><IsLeaderInDept><![CDATA[1,0,0]]></IsLeaderInDept><Position><![CDATA[产品经理]]></Position><Gender>1</Gender><Status>1</Status><ExtAttr><Item><Name><![CDATA[爱好]]></Name><Type>0</Type><Text><Value><![CDATA[旅游]]></Value></Text></Item><Item><Name><![CDATA[卡号]]></Name><Type>1</Type><Web><Title><![CDATA[企业微信]]></Title><Url><![CDATA[https://work.weixin.qq.com]]></Url></Web></Item></ExtAttr></xml>",
        ),
        (
            "change_external_contact",
            "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId><InfoType><![CDATA[change_external_contact]]></InfoType><TimeStamp>1403610513</TimeStamp><ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[zhangsan]]></UserID><ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACH71w]]></ExternalUserID><State><![CDATA[teststate]]></State><WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode></xml>",
        ),
        (
            "change_external_chat",
            "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId><InfoType><![CDATA[change_external_chat]]></InfoType><TimeStamp>1403610513</TimeStamp><ChatId><![CDATA[wrx7HUARsKd6tmhfGWkx6cs47XfSfUBQ]]></ChatId><ChangeType><![CDATA[update]]></ChangeType><UpdateDetail><![CDATA[add_member]]></UpdateDetail><JoinScene>1</JoinScene><MemChangeCnt>2</MemChangeCnt><MemChangeList><Item>Jack</Item><Item>Rose</Item></MemChangeList><LastMemVer>9c3f97c2ada667dfb5f6d03308d963e1</LastMemVer><CurMemVer>71217227bbd112ecfe3a49c482195cb4</CurMemVer></xml>",
        ),
        (
            "change_external_tag",
            "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId><InfoType><![CDATA[change_external_tag]]></InfoType><TimeStamp>1403610513</TimeStamp><Id><![CDATA[etm7wjCgAA4gVEpJHx5_WWESTD5Qj8cw]]></Id><TagType><![CDATA[tag]]></TagType><ChangeType><![CDATA[create]]></ChangeType></xml>",
        ),
        (
            "data_text_message",
            "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>",
        ),
    ];
    let mut group = c.benchmark_group("parse");
    for (kind, xml) in kinds {
        group.throughput(Throughput::Bytes(xml.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(kind), xml, |b, xml| {
            b.iter(|| {
                let elements = callback::parse(black_box(xml)).expect("parses");
                message_from(&elements).expect("typed")
            })
        });
    }
    let envelope = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>";
    group.throughput(Throughput::Bytes(envelope.len() as u64));
    group.bench_function("envelope", |b| b.iter(|| parse_envelope(black_box(envelope.as_bytes())).expect("envelope")));
    group.finish();
}

criterion_group!(benches, open, parse);
criterion_main!(benches);
