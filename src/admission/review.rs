//! Decoding an AdmissionReview (`admission.k8s.io/v1`, and `v1beta1` which has the same
//! shape). Parsed from `serde_json::Value` by hand rather than through typed structs, so
//! that a malformed review is answered with the field that is wrong, not a serde message.
//! The tree leaves out the parts of the objects that nothing here reads ([`Tree`]).

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::decision::breakglass::Requester;

/// The AdmissionReview versions understood; the response uses the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    V1Beta1,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "admission.k8s.io/v1",
            ApiVersion::V1Beta1 => "admission.k8s.io/v1beta1",
        }
    }

    fn parse(text: &str) -> Option<ApiVersion> {
        [ApiVersion::V1, ApiVersion::V1Beta1]
            .into_iter()
            .find(|version| version.as_str() == text)
    }
}

/// What the request does to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    fn parse(text: &str) -> Option<Operation> {
        [
            Operation::Create,
            Operation::Update,
            Operation::Delete,
            Operation::Connect,
        ]
        .into_iter()
        .find(|operation| operation.as_str() == text)
    }
}

/// `request.kind`: the kind of the object under review.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl GroupVersionKind {
    /// `v1` or `apps/v1`, as in an object's `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// The parts of an admission request the webhook uses.
#[derive(Debug, Clone)]
pub struct AdmissionRequest {
    pub api_version: ApiVersion,
    pub uid: String,
    pub kind: GroupVersionKind,
    /// `ephemeralcontainers` for `pods/ephemeralcontainers`; `None` for the main resource.
    pub sub_resource: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub operation: Operation,
    pub user: Requester,
    /// The object as it will be stored (CREATE, UPDATE), without its `status` and
    /// `metadata.managedFields` (see [`Tree`]).
    pub object: Option<Value>,
    /// The object as it was (UPDATE, DELETE), likewise.
    pub old_object: Option<Value>,
    pub dry_run: bool,
    /// Not part of the review: who sent it, from the connection (set by the router).
    pub caller: crate::evidence::records::Caller,
    /// Not part of the review: when its headers arrived (set by the router; decoding
    /// assumes now). The review's budget counts from here, so that time spent waiting for a
    /// place in flight, for the body and for lookups is not granted a second time.
    pub received: tokio::time::Instant,
}

/// What is wrong with a review.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("request body is not JSON: {0}")]
    NotJson(String),
    #[error("request body is not a JSON object")]
    NotAnObject,
    #[error("kind is {0:?}, expected \"AdmissionReview\"")]
    WrongKind(String),
    #[error(
        "apiVersion is {0:?}, expected \"admission.k8s.io/v1\" (or \"admission.k8s.io/v1beta1\")"
    )]
    WrongApiVersion(String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("request.uid is missing; the response carries an empty uid")]
    MissingUid,
    #[error("request.{field} is missing")]
    MissingField { field: &'static str },
    #[error("request.{field} is not {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("request.operation {0:?} is not CREATE, UPDATE, DELETE or CONNECT")]
    UnknownOperation(String),
    #[error("request.object is not a decodable {kind}: {why}")]
    Undecodable { kind: String, why: String },
}

/// A review that cannot be answered normally: what to echo, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The request's uid when it had one, else empty.
    pub uid: String,
    /// The request's version when it was a known one, else v1.
    pub api_version: ApiVersion,
    pub error: ReviewError,
}

/// Decodes a review; on failure, says what is malformed and what can still be echoed.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest, Malformed> {
    let fail = |uid: &str, api_version, error| Malformed {
        uid: uid.to_owned(),
        api_version,
        error,
    };
    let review = Tree::decode(body)
        .map_err(|error| fail("", ApiVersion::V1, ReviewError::NotJson(error.to_string())))?;
    let Value::Object(mut review) = review else {
        return Err(fail("", ApiVersion::V1, ReviewError::NotAnObject));
    };
    // The objects are most of a review: moved out here rather than copied later.
    let objects = match review.get_mut("request") {
        Some(Value::Object(request)) => (request.remove("object"), request.remove("oldObject")),
        _ => (None, None),
    };
    // The uid is read first so that every later failure can still be echoed to the API
    // server, which otherwise discards the answer as belonging to another request.
    let request = review.get("request").filter(|request| !request.is_null());
    let uid = request
        .and_then(|request| request.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let declared_version = review.get("apiVersion").and_then(Value::as_str);
    let api_version = declared_version
        .and_then(ApiVersion::parse)
        .unwrap_or(ApiVersion::V1);
    match review.get("kind").and_then(Value::as_str) {
        Some("AdmissionReview") => {}
        other => {
            let kind = other.map_or_else(|| "(missing)".to_owned(), str::to_owned);
            return Err(fail(uid, api_version, ReviewError::WrongKind(kind)));
        }
    }
    if ApiVersion::parse(declared_version.unwrap_or("")).is_none() {
        let version = declared_version.map_or_else(|| "(missing)".to_owned(), str::to_owned);
        return Err(fail(
            uid,
            api_version,
            ReviewError::WrongApiVersion(version),
        ));
    }
    let Some(request) = request else {
        return Err(fail(uid, api_version, ReviewError::NoRequest));
    };
    if !request.is_object() {
        let error = ReviewError::WrongType {
            field: "request",
            expected: "an object",
        };
        return Err(fail(uid, api_version, error));
    }
    if uid.is_empty() {
        return Err(fail(uid, api_version, ReviewError::MissingUid));
    }
    parse_request(request, uid, api_version, objects).map_err(|error| fail(uid, api_version, error))
}

/// `objects`: the request's `object` and `oldObject`, already taken out of it.
fn parse_request(
    request: &Value,
    uid: &str,
    api_version: ApiVersion,
    (object, old_object): (Option<Value>, Option<Value>),
) -> Result<AdmissionRequest, ReviewError> {
    let kind = match request.get("kind") {
        None | Some(Value::Null) => return Err(ReviewError::MissingField { field: "kind" }),
        Some(kind) => GroupVersionKind {
            group: optional_str(kind, "group", "kind.group")?.unwrap_or_default(),
            version: optional_str(kind, "version", "kind.version")?.unwrap_or_default(),
            kind: optional_str(kind, "kind", "kind.kind")?
                .filter(|kind| !kind.is_empty())
                .ok_or(ReviewError::MissingField { field: "kind.kind" })?,
        },
    };
    let operation = optional_str(request, "operation", "operation")?
        .ok_or(ReviewError::MissingField { field: "operation" })?;
    let operation = Operation::parse(&operation).ok_or(ReviewError::UnknownOperation(operation))?;
    let user = match request.get("userInfo") {
        None | Some(Value::Null) => Requester::default(),
        Some(user) => Requester {
            username: optional_str(user, "username", "userInfo.username")?.unwrap_or_default(),
            groups: match user.get("groups") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(groups)) => groups
                    .iter()
                    .map(|group| group.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(ReviewError::WrongType {
                        field: "userInfo.groups",
                        expected: "a list of strings",
                    })?,
                Some(_) => {
                    return Err(ReviewError::WrongType {
                        field: "userInfo.groups",
                        expected: "a list of strings",
                    })
                }
            },
        },
    };
    let dry_run = match request.get("dryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(dry_run)) => *dry_run,
        Some(_) => {
            return Err(ReviewError::WrongType {
                field: "dryRun",
                expected: "a boolean",
            })
        }
    };
    let object = object_field(object, "object")?;
    let old_object = object_field(old_object, "oldObject")?;
    let needs_object = matches!(operation, Operation::Create | Operation::Update);
    if needs_object && object.is_none() {
        return Err(ReviewError::MissingField { field: "object" });
    }
    Ok(AdmissionRequest {
        api_version,
        uid: uid.to_owned(),
        kind,
        sub_resource: optional_str(request, "subResource", "subResource")?
            .filter(|sub_resource| !sub_resource.is_empty()),
        name: optional_str(request, "name", "name")?.filter(|name| !name.is_empty()),
        namespace: optional_str(request, "namespace", "namespace")?
            .filter(|namespace| !namespace.is_empty()),
        operation,
        user,
        object,
        old_object,
        dry_run,
        caller: crate::evidence::records::Caller::default(),
        received: tokio::time::Instant::now(),
    })
}

/// A string member that may be absent or null.
fn optional_str(
    value: &Value,
    key: &str,
    field: &'static str,
) -> Result<Option<String>, ReviewError> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ReviewError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

/// `object` / `oldObject`: absent or null, or a JSON object.
fn object_field(value: Option<Value>, field: &'static str) -> Result<Option<Value>, ReviewError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(object @ Value::Object(_)) => Ok(Some(object)),
        Some(_) => Err(ReviewError::WrongType {
            field,
            expected: "an object",
        }),
    }
}

/// Where a JSON value stands in a review, for what of it is kept in the tree. Every review
/// pays for decoding its body, and most of a Pod's bytes are its `metadata.managedFields`
/// (the API server's field ownership: dozens of small objects) and its `status`, which no
/// decision reads: they are parsed (so the body is still checked to be JSON) but not kept.
/// Everything else is the tree `serde_json` would build, the same for any shape; only a
/// Pod's spec and metadata are read.
#[derive(Debug, Clone, Copy)]
enum Tree {
    Review,
    Request,
    Object,
    Metadata,
    /// Below the levels above: kept whole.
    Whole,
}

impl Tree {
    fn decode(body: &[u8]) -> serde_json::Result<Value> {
        let mut json = serde_json::Deserializer::from_slice(body);
        let review = Tree::Review.deserialize(&mut json)?;
        json.end()?;
        Ok(review)
    }

    /// How the member `key` of a JSON object at this level is kept: `None` when left out.
    fn member(self, key: &str) -> Option<Tree> {
        match (self, key) {
            (Tree::Object, "status") | (Tree::Metadata, "managedFields") => None,
            (Tree::Review, "request") => Some(Tree::Request),
            (Tree::Request, "object" | "oldObject") => Some(Tree::Object),
            (Tree::Object, "metadata") => Some(Tree::Metadata),
            _ => Some(Tree::Whole),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Tree {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, json: D) -> Result<Value, D::Error> {
        match self {
            Tree::Whole => serde::Deserialize::deserialize(json),
            _ => json.deserialize_any(self),
        }
    }
}

/// The values `serde_json::Value` decodes to, but for objects' members ([`Tree::member`]).
impl<'de> Visitor<'de> for Tree {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut list = Vec::new();
        while let Some(item) = items.next_element()? {
            list.push(item);
        }
        Ok(Value::Array(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = members.next_key::<String>()? {
            match self.member(&key) {
                Some(level) => {
                    let value = members.next_value_seed(level)?;
                    object.insert(key, value);
                }
                None => {
                    members.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "kind": "AdmissionReview",
            "apiVersion": "admission.k8s.io/v1",
            "request": request,
        }))
        .unwrap()
    }

    fn pod_request() -> Value {
        json!({
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "payments",
            "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["sre"]},
            "object": {"metadata": {"name": "p"}},
            "dryRun": true,
        })
    }

    #[test]
    fn decodes_a_pod_create() {
        let request = decode(&review(pod_request())).unwrap();
        assert_eq!(request.uid, "u-1");
        assert_eq!(request.api_version, ApiVersion::V1);
        assert_eq!(request.kind.kind, "Pod");
        assert_eq!(request.kind.api_version(), "v1");
        assert_eq!(request.operation, Operation::Create);
        assert_eq!(request.namespace.as_deref(), Some("payments"));
        assert_eq!(request.user.username, "alice");
        assert_eq!(request.user.groups, ["sre"]);
        assert!(request.dry_run);
        assert!(request.old_object.is_none());
    }

    #[test]
    fn the_objects_leave_out_only_what_nothing_reads() {
        let body = include_bytes!("../../tests/data/admission/pod-create.gke.json");
        let whole: Value = serde_json::from_slice(body).unwrap();
        let mut expected = whole["request"]["object"].clone();
        let object = expected.as_object_mut().unwrap();
        assert!(
            object.remove("status").is_some(),
            "the fixture has a status"
        );
        let metadata = object["metadata"].as_object_mut().unwrap();
        assert!(metadata.remove("managedFields").is_some());
        assert!(metadata.contains_key("annotations"));
        let mut update = whole.clone();
        update["request"]["operation"] = json!("UPDATE");
        update["request"]["oldObject"] = whole["request"]["object"].clone();

        let request = decode(&serde_json::to_vec(&update).unwrap()).unwrap();
        assert_eq!(request.object.as_ref(), Some(&expected));
        assert_eq!(request.old_object.as_ref(), Some(&expected));
        assert_eq!(request.name.as_deref(), whole["request"]["name"].as_str());
        // Only the objects' own members are left out, not members of that name elsewhere.
        let mut nested = whole.clone();
        nested["request"]["object"]["spec"]["status"] = json!({"kept": [1, 2.5, -3, null]});
        let request = decode(&serde_json::to_vec(&nested).unwrap()).unwrap();
        assert_eq!(
            request.object.unwrap()["spec"],
            nested["request"]["object"]["spec"]
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_whatever_part_of_it_is_left_out() {
        let body = br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":{"status":{"phase":}}}}"#;
        let malformed = decode(body).expect_err("invalid JSON in a part left out");
        assert!(
            matches!(malformed.error, ReviewError::NotJson(_)),
            "{malformed:?}"
        );
        let trailing = br#"{"kind":"AdmissionReview"} {"#;
        assert!(matches!(
            decode(trailing).expect_err("trailing").error,
            ReviewError::NotJson(_)
        ));
    }

    #[test]
    fn malformed_reviews_say_what_is_wrong() {
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut whole = json!({
                "kind": "AdmissionReview",
                "apiVersion": "admission.k8s.io/v1beta1",
                "request": pod_request(),
            });
            edit(&mut whole);
            serde_json::to_vec(&whole).unwrap()
        };
        let cases: Vec<(&str, Vec<u8>, &str, ApiVersion, &str)> = vec![
            (
                "not json",
                b"{nope".to_vec(),
                "",
                ApiVersion::V1,
                "request body is not JSON",
            ),
            (
                "array",
                b"[]".to_vec(),
                "",
                ApiVersion::V1,
                "not a JSON object",
            ),
            (
                "wrong kind",
                with(&|v| v["kind"] = json!("ConversionReview")),
                "u-1",
                ApiVersion::V1Beta1,
                "kind is \"ConversionReview\", expected \"AdmissionReview\"",
            ),
            (
                "wrong apiVersion",
                with(&|v| v["apiVersion"] = json!("admission.k8s.io/v2")),
                "u-1",
                ApiVersion::V1,
                "apiVersion is \"admission.k8s.io/v2\"",
            ),
            (
                "no request",
                with(&|v| v["request"] = Value::Null),
                "",
                ApiVersion::V1Beta1,
                "has no request",
            ),
            (
                "missing uid",
                with(&|v| {
                    v["request"].as_object_mut().unwrap().remove("uid");
                }),
                "",
                ApiVersion::V1Beta1,
                "request.uid is missing; the response carries an empty uid",
            ),
            (
                "missing kind",
                with(&|v| {
                    v["request"].as_object_mut().unwrap().remove("kind");
                }),
                "u-1",
                ApiVersion::V1Beta1,
                "request.kind is missing",
            ),
            (
                "unknown operation",
                with(&|v| v["request"]["operation"] = json!("PATCH")),
                "u-1",
                ApiVersion::V1Beta1,
                "request.operation \"PATCH\"",
            ),
            (
                "object not an object",
                with(&|v| v["request"]["object"] = json!("pod")),
                "u-1",
                ApiVersion::V1Beta1,
                "request.object is not an object",
            ),
            (
                "create without object",
                with(&|v| v["request"]["object"] = Value::Null),
                "u-1",
                ApiVersion::V1Beta1,
                "request.object is missing",
            ),
            (
                "groups not strings",
                with(&|v| v["request"]["userInfo"]["groups"] = json!([1])),
                "u-1",
                ApiVersion::V1Beta1,
                "request.userInfo.groups is not a list of strings",
            ),
        ];
        for (name, body, uid, version, message) in cases {
            let malformed = decode(&body).expect_err(name);
            assert_eq!(malformed.uid, uid, "{name}");
            assert_eq!(malformed.api_version, version, "{name}");
            let text = malformed.error.to_string();
            assert!(text.contains(message), "{name}: {text}");
        }
    }
}
