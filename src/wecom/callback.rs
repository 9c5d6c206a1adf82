//! The XML of WeCom callbacks: the encrypted envelope, the decrypted fields as a
//! JSON object, and the typed messages the service acts on.
//!
//! Field rules: every element becomes a key of its parent object; an element with
//! children becomes an object, one without becomes its text (CDATA or escaped
//! text, byte for byte, never trimmed); repeated elements become an array.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::map::Entry;
use serde_json::{Map, Value};

use crate::model::{CorpId, ExternalUserId};

pub type Fields = Map<String, Value>;

/// Nesting deeper than this is not a WeCom message.
const MAX_DEPTH: usize = 16;

/// Elements whose value is a credential: shown as this in the event feed.
const REDACTED: &str = "[redacted]";
const SECRET_ELEMENTS: [&str; 3] = ["SuiteTicket", "AuthCode", "AccessToken"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The detail may quote input: shown only as a bounded, escaped excerpt.
    #[error("malformed XML: {}", crate::text::excerpt(.0))]
    Malformed(String),
    #[error("the root element must be <xml>")]
    Root,
    #[error("missing or empty element <{0}>")]
    MissingElement(&'static str),
}

/// The encrypted envelope of a POST callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub encrypt: String,
}

pub fn parse_envelope(body: &[u8]) -> Result<Envelope, XmlError> {
    let text = std::str::from_utf8(body).map_err(|_| XmlError::Malformed("body is not UTF-8".into()))?;
    match parse(text)?.text("Encrypt") {
        Some(encrypt) if !encrypt.is_empty() => Ok(Envelope { encrypt: encrypt.to_owned() }),
        _ => Err(XmlError::MissingElement("Encrypt")),
    }
}

/// The child elements of an element, in document order (a name may repeat). Names
/// and texts borrow from the document: a callback is typed, keyed and written to
/// JSON without copying its fields first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elements<'a>(Vec<(Cow<'a, str>, Content<'a>)>);

/// What an element holds: text (CDATA or escaped, byte for byte), or elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content<'a> {
    Text(Cow<'a, str>),
    Elements(Elements<'a>),
}

impl<'a> Elements<'a> {
    /// The text of the element of this name, as in the fields: only when exactly one
    /// element has it (repeated ones are an array) and it holds text, not elements.
    pub fn text(&self, name: &str) -> Option<&str> {
        let mut named = self.0.iter().filter(|(element, _)| element == name);
        match (named.next(), named.next()) {
            (Some((_, Content::Text(text))), None) => Some(text),
            _ => None,
        }
    }

    /// The fields as a JSON object.
    pub fn into_fields(self) -> Fields {
        let mut fields = Fields::new();
        for (name, content) in self.0 {
            let value = match content {
                Content::Text(text) => Value::String(text.into_owned()),
                Content::Elements(children) => Value::Object(children.into_fields()),
            };
            insert(&mut fields, name.into_owned(), value);
        }
        fields
    }

    /// The fields as JSON text, exactly as `into_fields` would serialize, with the
    /// credential values (tickets, auth codes, access tokens) replaced at any depth.
    pub fn to_redacted_json(&self) -> String {
        // An object of string keys and values cannot fail to serialize.
        serde_json::to_string(&RedactedObject(self)).expect("string fields serialize")
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Serializes like the [`Fields`] map: keys in order, a repeated name as an array
/// in document order.
struct RedactedObject<'e, 'a>(&'e Elements<'a>);

/// The contents of one name: a value when it is one element, else an array.
struct RedactedGroup<'e, 'a> {
    contents: &'e [&'e Content<'a>],
    secret: bool,
}

struct RedactedContent<'e, 'a> {
    content: &'e Content<'a>,
    secret: bool,
}

impl Serialize for RedactedObject<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sorted: Vec<(usize, &(Cow<'_, str>, Content<'_>))> = self.0.0.iter().enumerate().collect();
        // By position too, so a repeated name keeps its elements in document order.
        sorted.sort_unstable_by(|(left_at, (left, _)), (right_at, (right, _))| (left, left_at).cmp(&(right, right_at)));
        let mut contents = Vec::with_capacity(sorted.len());
        let mut map = serializer.serialize_map(None)?;
        let mut at = 0;
        while at < sorted.len() {
            let name = &sorted[at].1.0;
            contents.clear();
            contents.extend(
                sorted[at..].iter().take_while(|(_, (other, _))| other == name).map(|(_, (_, content))| content),
            );
            at += contents.len();
            let secret = SECRET_ELEMENTS.contains(&name.as_ref());
            map.serialize_entry(name, &RedactedGroup { contents: &contents, secret })?;
        }
        map.end()
    }
}

impl Serialize for RedactedGroup<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let each = |content| RedactedContent { content, secret: self.secret };
        match self.contents {
            [one] => each(one).serialize(serializer),
            many => serializer.collect_seq(many.iter().map(|content| each(content))),
        }
    }
}

impl Serialize for RedactedContent<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.content {
            Content::Text(_) if self.secret => serializer.serialize_str(REDACTED),
            Content::Text(text) => serializer.serialize_str(text),
            // Within a credential's element, only credentials' values are replaced.
            Content::Elements(children) => RedactedObject(children).serialize(serializer),
        }
    }
}

/// An element being parsed: its children so far and its text so far. The text
/// borrows from the document until a second piece must be joined to it.
struct Frame<'a> {
    name: Cow<'a, str>,
    children: Elements<'a>,
    text: Cow<'a, str>,
}

/// Parses a `<xml>…</xml>` document into its elements.
pub fn parse(xml: &str) -> Result<Elements<'_>, XmlError> {
    // XML allows no NUL, and PostgreSQL text cannot hold one: refused here, on both
    // backends alike, before it could fail a whole group commit.
    if memchr::memchr(0, xml.as_bytes()).is_some() {
        return Err(XmlError::Malformed("NUL character".into()));
    }
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Frame<'_>> = Vec::with_capacity(MAX_DEPTH);
    let mut root: Option<Elements<'_>> = None;
    loop {
        let event = reader.read_event().map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::Malformed("elements nested too deeply".into()));
                }
                let name = element_name(xml, &start)?;
                if stack.is_empty() && name != "xml" {
                    return Err(XmlError::Root);
                }
                stack.push(Frame { name, children: Elements::default(), text: Cow::Borrowed("") });
            }
            Event::Empty(empty) => {
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                let name = element_name(xml, &empty)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.0.push((name, Content::Text(Cow::Borrowed("")))),
                    None if name == "xml" => root = Some(Elements::default()),
                    None => return Err(XmlError::Root),
                }
            }
            Event::End(_) => {
                // quick-xml has already checked that the end name matches.
                let frame = stack.pop().ok_or_else(|| XmlError::Malformed("unbalanced end tag".into()))?;
                let has_text = !frame.text.trim().is_empty();
                let content = match (frame.children.is_empty(), has_text) {
                    (true, _) => Content::Text(frame.text),
                    (false, false) => Content::Elements(frame.children),
                    (false, true) => {
                        return Err(XmlError::Malformed(format!("<{}> mixes text and elements", frame.name)));
                    }
                };
                match (stack.last_mut(), content) {
                    (Some(parent), content) => parent.children.0.push((frame.name, content)),
                    (None, Content::Elements(elements)) => root = Some(elements),
                    (None, _) if !has_text => root = Some(Elements::default()),
                    (None, _) => {
                        return Err(XmlError::Malformed("<xml> holds text, not elements".into()));
                    }
                }
            }
            Event::Text(text) => append_text(&mut stack, document_text(xml, &text)?)?,
            Event::CData(cdata) => append_text(&mut stack, document_text(xml, &cdata)?)?,
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(ch)) => ch.to_string(),
                    Ok(None) => {
                        let name = reference.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| XmlError::Malformed(format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                    Err(error) => return Err(XmlError::Malformed(error.to_string())),
                };
                append_text(&mut stack, Cow::Owned(resolved))?;
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions and doctypes carry no
            // fields; entities a doctype declares are never expanded.
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("the document ends inside an element".into()));
    }
    root.ok_or(XmlError::Root)
}

fn element_name<'a>(xml: &'a str, start: &BytesStart<'_>) -> Result<Cow<'a, str>, XmlError> {
    document_text(xml, start.name().as_ref()).map_err(|_| XmlError::Malformed("element name is not UTF-8".into()))
}

/// Bytes the reader lent from the document are a slice of `xml`, valid UTF-8
/// already, so they are taken from there instead of being checked again.
fn document_text<'a>(xml: &'a str, bytes: &[u8]) -> Result<Cow<'a, str>, XmlError> {
    let start = (bytes.as_ptr() as usize).wrapping_sub(xml.as_ptr() as usize);
    match xml.get(start..start.wrapping_add(bytes.len())) {
        Some(text) if text.as_ptr() == bytes.as_ptr() => Ok(Cow::Borrowed(text)),
        _ => std::str::from_utf8(bytes)
            .map(|text| Cow::Owned(text.to_owned()))
            .map_err(|_| XmlError::Malformed("text is not UTF-8".into())),
    }
}

fn append_text<'a>(stack: &mut [Frame<'a>], text: Cow<'a, str>) -> Result<(), XmlError> {
    match stack.last_mut() {
        // Between an element's children only non-blank text matters (it is refused at
        // the end tag), so the indentation of a WeCom document is never copied.
        Some(frame) if !frame.children.is_empty() && text.trim().is_empty() => Ok(()),
        Some(frame) if frame.text.is_empty() => {
            frame.text = text;
            Ok(())
        }
        Some(frame) => {
            frame.text.to_mut().push_str(&text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(XmlError::Malformed("text outside the root element".into())),
    }
}

fn insert(fields: &mut Fields, name: String, value: Value) {
    match fields.entry(name) {
        Entry::Vacant(vacant) => {
            vacant.insert(value);
        }
        Entry::Occupied(mut occupied) => match occupied.get_mut() {
            Value::Array(values) => values.push(value),
            existing => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
        },
    }
}

/// The messages the service acts on; every other kind is stored and shown as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    SuiteTicket {
        ticket: String,
    },
    CreateAuth {
        auth_code: String,
    },
    ChangeAuth {
        auth_corp_id: CorpId,
    },
    CancelAuth {
        auth_corp_id: CorpId,
    },
    ResetPermanentCode {
        auth_code: String,
    },
    ChangeContact {
        auth_corp_id: CorpId,
        change_type: String,
    },
    ChangeExternalContact {
        auth_corp_id: CorpId,
        change_type: String,
        external_userid: Option<ExternalUserId>,
    },
    ChangeExternalChat {
        auth_corp_id: CorpId,
        chat_id: String,
        change_type: String,
    },
    ChangeExternalTag {
        auth_corp_id: CorpId,
        change_type: String,
    },
    /// A data-callback message (`MsgType`) or app event (`MsgType=event`).
    Data {
        corpid: CorpId,
        msg_type: String,
        event: Option<String>,
    },
    /// Any other InfoType: stored and shown, never rejected.
    Other {
        kind: String,
        corpid: Option<CorpId>,
    },
}

impl Message {
    /// The feed's `kind`: the InfoType, else the data callback's Event or MsgType.
    pub fn kind(&self) -> &str {
        match self {
            Self::SuiteTicket { .. } => "suite_ticket",
            Self::CreateAuth { .. } => "create_auth",
            Self::ChangeAuth { .. } => "change_auth",
            Self::CancelAuth { .. } => "cancel_auth",
            Self::ResetPermanentCode { .. } => "reset_permanent_code",
            Self::ChangeContact { .. } => "change_contact",
            Self::ChangeExternalContact { .. } => "change_external_contact",
            Self::ChangeExternalChat { .. } => "change_external_chat",
            Self::ChangeExternalTag { .. } => "change_external_tag",
            Self::Data { msg_type, event, .. } => event.as_deref().unwrap_or(msg_type),
            Self::Other { kind, .. } => kind,
        }
    }

    /// The corp the message is about, when it names one.
    pub fn corpid(&self) -> Option<&CorpId> {
        match self {
            Self::ChangeAuth { auth_corp_id }
            | Self::CancelAuth { auth_corp_id }
            | Self::ChangeContact { auth_corp_id, .. }
            | Self::ChangeExternalContact { auth_corp_id, .. }
            | Self::ChangeExternalChat { auth_corp_id, .. }
            | Self::ChangeExternalTag { auth_corp_id, .. } => Some(auth_corp_id),
            Self::Data { corpid, .. } => Some(corpid),
            Self::Other { corpid, .. } => corpid.as_ref(),
            Self::SuiteTicket { .. } | Self::CreateAuth { .. } | Self::ResetPermanentCode { .. } => None,
        }
    }
}

pub fn message_from(fields: &Elements<'_>) -> Result<Message, XmlError> {
    if let Some(info_type) = text(fields, "InfoType") {
        return Ok(match info_type {
            "suite_ticket" => Message::SuiteTicket { ticket: required(fields, "SuiteTicket")?.to_owned() },
            "create_auth" => Message::CreateAuth { auth_code: required(fields, "AuthCode")?.to_owned() },
            "reset_permanent_code" => {
                Message::ResetPermanentCode { auth_code: required(fields, "AuthCode")?.to_owned() }
            }
            "change_auth" => Message::ChangeAuth { auth_corp_id: required(fields, "AuthCorpId")?.into() },
            "cancel_auth" => Message::CancelAuth { auth_corp_id: required(fields, "AuthCorpId")?.into() },
            "change_contact" => Message::ChangeContact {
                auth_corp_id: required(fields, "AuthCorpId")?.into(),
                change_type: required(fields, "ChangeType")?.to_owned(),
            },
            "change_external_chat" => Message::ChangeExternalChat {
                auth_corp_id: required(fields, "AuthCorpId")?.into(),
                chat_id: required(fields, "ChatId")?.to_owned(),
                change_type: required(fields, "ChangeType")?.to_owned(),
            },
            "change_external_tag" => Message::ChangeExternalTag {
                auth_corp_id: required(fields, "AuthCorpId")?.into(),
                change_type: required(fields, "ChangeType")?.to_owned(),
            },
            "change_external_contact" => Message::ChangeExternalContact {
                auth_corp_id: required(fields, "AuthCorpId")?.into(),
                change_type: required(fields, "ChangeType")?.to_owned(),
                external_userid: text(fields, "ExternalUserID").map(ExternalUserId::from),
            },
            other => Message::Other {
                kind: other.to_owned(),
                corpid: ["AuthCorpId", "PaidCorpId", "CorpId"]
                    .into_iter()
                    .find_map(|name| text(fields, name))
                    .map(CorpId::from),
            },
        });
    }
    // A data callback: a user message (MsgType) or an app event (MsgType=event).
    let msg_type = required(fields, "MsgType")?;
    let event = match msg_type {
        "event" => Some(required(fields, "Event")?.to_owned()),
        _ => None,
    };
    Ok(Message::Data { corpid: required(fields, "ToUserName")?.into(), msg_type: msg_type.to_owned(), event })
}

/// A non-empty text field.
fn text<'a>(fields: &'a Elements<'_>, name: &str) -> Option<&'a str> {
    fields.text(name).filter(|value| !value.is_empty())
}

fn required<'a>(fields: &'a Elements<'_>, name: &'static str) -> Result<&'a str, XmlError> {
    text(fields, name).ok_or(XmlError::MissingElement(name))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_fields(xml: &str) -> Result<Fields, XmlError> {
        parse(xml).map(Elements::into_fields)
    }

    #[test]
    fn the_official_envelope_yields_its_ciphertext() {
        let body = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<Encrypt><![CDATA[RypE+/==]]></Encrypt>\n<AgentID><![CDATA[218]]></AgentID>\n</xml>";
        assert_eq!(parse_envelope(body.as_bytes()).expect("envelope").encrypt, "RypE+/==");
    }

    #[test]
    fn an_envelope_without_encrypt_is_refused() {
        let body = b"<xml><ToUserName>x</ToUserName><Encrypt></Encrypt></xml>";
        assert_eq!(parse_envelope(body), Err(XmlError::MissingElement("Encrypt")));
        assert!(matches!(parse_envelope(b"\xff\xfe"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse_envelope(b"<xml><Encrypt>abc</xml>"), Err(XmlError::Malformed(_))));
        assert_eq!(parse_envelope(b"<root><Encrypt>abc</Encrypt></root>"), Err(XmlError::Root));
        assert_eq!(parse_envelope(b""), Err(XmlError::Root));
    }

    #[test]
    fn fields_keep_text_exactly_and_shape_nesting_and_repeats() {
        let xml = "<?xml version=\"1.0\"?>\n<xml>\n  <ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>\n  <Content> 你好 &amp; &lt;hi&gt; &#x41;</Content>\n  <Empty/>\n  <Blank></Blank>\n  <ContactSync><AccessToken>tok</AccessToken><ExpiresIn>1800</ExpiresIn></ContactSync>\n  <MemChangeList><Item>a</Item><Item>b</Item><Item>c</Item></MemChangeList>\n  <!-- a comment -->\n</xml>";
        let fields = parse_fields(xml).expect("parses");
        assert_eq!(
            Value::Object(fields),
            json!({
                "ToUserName": "ww1436e0e65a779aee",
                "Content": " 你好 & <hi> A",
                "Empty": "",
                "Blank": "",
                "ContactSync": {"AccessToken": "tok", "ExpiresIn": "1800"},
                "MemChangeList": {"Item": ["a", "b", "c"]},
            })
        );
    }

    #[test]
    fn hostile_or_broken_documents_are_refused() {
        let doctype = "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><A>&x;</A></xml>";
        assert!(matches!(parse_fields(doctype), Err(XmlError::Malformed(_))));
        assert!(matches!(parse_fields("<xml><A>1</B></xml>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse_fields("<xml><A>1</A></xml><xml/>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse_fields("<xml>text<A>1</A></xml>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse_fields("<xml><A>"), Err(XmlError::Malformed(_))));
        let deep = format!("<xml>{}{}</xml>", "<a>".repeat(20), "</a>".repeat(20));
        assert!(matches!(parse_fields(&deep), Err(XmlError::Malformed(_))));
        assert_eq!(parse_fields("<XML><A>1</A></XML>"), Err(XmlError::Root));
        assert_eq!(parse_fields("<xml/>"), Ok(Fields::new()));
    }

    #[test]
    fn text_in_pieces_is_joined_and_text_after_children_is_refused() {
        let xml = "<xml>\n\t<A>x<![CDATA[ <y> ]]>&amp;z&#x41;</A>\n\t<B>\n\t\t<C> </C>\n\t</B>\n</xml>";
        assert_eq!(Value::Object(parse_fields(xml).expect("parses")), json!({"A": "x <y> &zA", "B": {"C": " "}}));
        assert!(matches!(parse_fields("<xml><A>1</A>\n late </xml>"), Err(XmlError::Malformed(_))));
        assert!(matches!(parse_fields("<xml><B><C>1</C> <![CDATA[x]]></B></xml>"), Err(XmlError::Malformed(_))));
    }

    fn message(xml: &str) -> Result<Message, XmlError> {
        message_from(&parse(xml)?)
    }

    #[test]
    fn instruction_callbacks_become_typed_messages() {
        let ticket = "<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId><InfoType><![CDATA[suite_ticket]]></InfoType><TimeStamp>1403610513</TimeStamp><SuiteTicket><![CDATA[asdfasfdasdfasdf]]></SuiteTicket></xml>";
        assert_eq!(message(ticket), Ok(Message::SuiteTicket { ticket: "asdfasfdasdfasdf".into() }));
        let create = "<xml><SuiteId>s</SuiteId><AuthCode>AUTHCODE</AuthCode><InfoType>create_auth</InfoType><TimeStamp>1403610513</TimeStamp><State>123</State></xml>";
        let create = message(create).expect("create_auth");
        assert_eq!((create.kind(), create.corpid().map(CorpId::as_str)), ("create_auth", None));
        let cancel = message("<xml><SuiteId>s</SuiteId><InfoType>cancel_auth</InfoType><AuthCorpId>wxf8b4f85f3a794e77</AuthCorpId></xml>")
            .expect("cancel_auth");
        assert_eq!((cancel.kind(), cancel.corpid().map(CorpId::as_str)), ("cancel_auth", Some("wxf8b4f85f3a794e77")));
        let external = "<xml><SuiteId>s</SuiteId><AuthCorpId>c</AuthCorpId><InfoType>change_external_contact</InfoType><ChangeType>add_external_contact</ChangeType><UserID>zhangsan</UserID><ExternalUserID>woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA</ExternalUserID><State>teststate</State><WelcomeCode>WELCOMECODE</WelcomeCode></xml>";
        assert_eq!(
            message(external),
            Ok(Message::ChangeExternalContact {
                auth_corp_id: "c".into(),
                change_type: "add_external_contact".into(),
                external_userid: Some("woAJ2GCAAAXtWyujaWJHDDGi0mACHAAA".into()),
            })
        );
        let contact = message("<xml><SuiteId>s</SuiteId><AuthCorpId>c</AuthCorpId><InfoType>change_contact</InfoType><ChangeType>delete_user</ChangeType><UserID>u</UserID></xml>")
            .expect("change_contact");
        assert_eq!((contact.kind(), contact.corpid().map(CorpId::as_str)), ("change_contact", Some("c")));
        let chat = message("<xml><SuiteId>s</SuiteId><AuthCorpId>c</AuthCorpId><InfoType>change_external_chat</InfoType><ChatId>wr1</ChatId><ChangeType>update</ChangeType><UpdateDetail>add_member</UpdateDetail><MemChangeList><Item>a</Item><Item>b</Item></MemChangeList></xml>")
            .expect("change_external_chat");
        let expected = Message::ChangeExternalChat {
            auth_corp_id: "c".into(),
            chat_id: "wr1".into(),
            change_type: "update".into(),
        };
        assert_eq!(chat, expected);
        let tag = message("<xml><SuiteId>s</SuiteId><AuthCorpId>c</AuthCorpId><InfoType>change_external_tag</InfoType><Id>t</Id><TagType>tag</TagType><ChangeType>create</ChangeType></xml>")
            .expect("change_external_tag");
        assert_eq!((tag.kind(), tag.corpid().map(CorpId::as_str)), ("change_external_tag", Some("c")));
        let order = message("<xml><SuiteId>s</SuiteId><InfoType>open_order</InfoType><PaidCorpId>p</PaidCorpId><OrderId>o</OrderId></xml>")
            .expect("open_order");
        assert_eq!((order.kind(), order.corpid().map(CorpId::as_str)), ("open_order", Some("p")));
    }

    #[test]
    fn an_action_without_its_required_element_is_refused() {
        let missing = "<xml><SuiteId>s</SuiteId><InfoType>create_auth</InfoType></xml>";
        assert_eq!(message(missing), Err(XmlError::MissingElement("AuthCode")));
        let empty_ticket = "<xml><InfoType>suite_ticket</InfoType><SuiteTicket></SuiteTicket></xml>";
        assert_eq!(message(empty_ticket), Err(XmlError::MissingElement("SuiteTicket")));
        assert_eq!(message("<xml><Foo>1</Foo></xml>"), Err(XmlError::MissingElement("MsgType")));
        let chat = "<xml><InfoType>change_external_chat</InfoType><AuthCorpId>c</AuthCorpId><ChangeType>create</ChangeType></xml>";
        assert_eq!(message(chat), Err(XmlError::MissingElement("ChatId")));
        let event = "<xml><ToUserName>c</ToUserName><MsgType>event</MsgType></xml>";
        assert_eq!(message(event), Err(XmlError::MissingElement("Event")));
    }

    #[test]
    fn data_callbacks_are_kinded_by_event_or_msg_type() {
        let text = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n</xml>";
        let text = message(text).expect("text message");
        assert_eq!((text.kind(), text.corpid().map(CorpId::as_str)), ("text", Some("wx5823bf96d3bd56c7")));
        let event =
            message("<xml><ToUserName>c</ToUserName><MsgType>event</MsgType><Event>unlicensed_notify</Event></xml>")
                .expect("event");
        assert_eq!(event.kind(), "unlicensed_notify");
    }

    #[test]
    fn credentials_are_redacted_at_any_depth() {
        let xml = "<xml><InfoType>register_corp</InfoType><SuiteTicket>t</SuiteTicket><AuthCode>c</AuthCode><ContactSync><AccessToken>secret</AccessToken><ExpiresIn>1800</ExpiresIn></ContactSync><List><Item><AuthCode>c1</AuthCode></Item><Item><AuthCode>c2</AuthCode></Item></List><State>keep</State><AccessToken>x</AccessToken><AccessToken>y</AccessToken></xml>";
        let json = parse(xml).expect("parses").to_redacted_json();
        assert_eq!(
            serde_json::from_str::<Value>(&json).expect("JSON"),
            json!({
                "InfoType": "register_corp",
                "SuiteTicket": "[redacted]",
                "AuthCode": "[redacted]",
                "ContactSync": {"AccessToken": "[redacted]", "ExpiresIn": "1800"},
                "List": {"Item": [{"AuthCode": "[redacted]"}, {"AuthCode": "[redacted]"}]},
                "State": "keep",
                "AccessToken": ["[redacted]", "[redacted]"],
            })
        );
    }

    /// A rejection may be logged and answered: it is short and on one line.
    fn assert_bounded(error: &XmlError) -> Result<(), proptest::test_runner::TestCaseError> {
        let reason = error.to_string();
        proptest::prop_assert!(reason.chars().count() <= 400, "reason of {} chars", reason.chars().count());
        proptest::prop_assert!(!reason.contains('\n') && !reason.contains('\r'));
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_are_refused_with_a_bounded_reason(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            if let Err(error) = parse_envelope(&body) {
                assert_bounded(&error)?;
            }
        }

        #[test]
        fn any_text_parses_to_a_message_or_a_bounded_reason(xml in "(<xml>)?(<[A-Za-z]{1,8}>[^\\x00]{0,40}(</[A-Za-z]{1,8}>)?){0,6}(</xml>)?") {
            match parse(&xml) {
                Ok(elements) => {
                    if let Err(error) = message_from(&elements) {
                        assert_bounded(&error)?;
                    }
                    let fields: Fields = serde_json::from_str(&elements.to_redacted_json()).expect("JSON");
                    for secret in SECRET_ELEMENTS {
                        proptest::prop_assert!(fields.get(secret).is_none_or(|value| value == REDACTED));
                    }
                }
                Err(error) => assert_bounded(&error)?,
            }
        }

        #[test]
        fn element_values_come_back_as_sent(values in proptest::collection::btree_map("[A-Z][A-Za-z]{0,10}", "[^\\x00\\]<>&\r]{1,60}", 1..8)) {
            let body: String = values.iter().map(|(name, value)| format!("<{name}><![CDATA[{value}]]></{name}>")).collect();
            let fields = parse_fields(&format!("<xml>{body}</xml>")).expect("well-formed XML");
            for (name, value) in &values {
                proptest::prop_assert_eq!(fields.get(name).and_then(Value::as_str), Some(value.as_str()));
            }
        }

        #[test]
        fn the_json_written_from_the_elements_is_the_fields_serialized(xml in document()) {
            let elements = parse(&xml).expect("well-formed XML");
            let written = elements.to_redacted_json();
            proptest::prop_assert_eq!(written, serde_json::to_string(&elements.into_fields()).expect("serializes"));
        }
    }

    /// Documents without credentials: nested and repeated names, texts that JSON
    /// must escape, in CDATA, escaped or in pieces.
    fn document() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let name = prop::sample::select(vec!["A", "B", "Item", "Ab", "a", "Z"]);
        let text = prop_oneof![
            "[^\\x00\\]<>&\r]{0,12}".prop_map(|text| format!("<![CDATA[{text}]]>")),
            "[a-z\"\\\\\t\n 你好]{0,12}",
            Just("x&lt;y&#x41;<![CDATA[\"z\"]]>".to_owned()),
        ];
        let leaf = (name.clone(), text).prop_map(|(name, text)| format!("<{name}>{text}</{name}>"));
        let element = leaf.prop_recursive(3, 24, 4, move |inner| {
            (name.clone(), prop::collection::vec(inner, 1..4))
                .prop_map(|(name, children)| format!("<{name}>{}</{name}>", children.concat()))
        });
        prop::collection::vec(element, 0..6).prop_map(|elements| format!("<xml>\n\t{}\n</xml>", elements.join("\n\t")))
    }
}
