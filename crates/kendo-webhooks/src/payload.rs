//! The typed events: [`Event`], the `data` of [`CallUploaded`] and
//! [`AiTrainingCompleted`] with their builders, and the lenient field
//! readers that make every field but the event's own id optional (a field
//! of an unexpected type reads as `None`; `Delivery::schema_drift` reports
//! it).

use std::borrow::Cow;
use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::reject::Rejection;

/// Name of the event sent when a call analysis is available.
pub const CALL_UPLOADED: &str = "call.uploaded";
/// Name of the event sent when an AI training session is completed.
pub const AI_TRAINING_COMPLETED: &str = "ai.training.completed";

/// `data` of the event named `.0`: a JSON object, parsed into its type.
pub(crate) struct TypedData<'n>(pub(crate) &'n str);

impl<'de> DeserializeSeed<'de> for TypedData<'_> {
    type Value = Event;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TypedData<'_> {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a data object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Event, A::Error> {
        let map = MapAccessDeserializer::new(map);
        Ok(match self.0 {
            CALL_UPLOADED => Event::CallUploaded(CallUploaded::deserialize(map)?),
            AI_TRAINING_COMPLETED => {
                Event::AiTrainingCompleted(AiTrainingCompleted::deserialize(map)?)
            }
            name => Event::Other {
                name: name.to_owned(),
                data: Value::deserialize(map)?,
            },
        })
    }
}

/// A Kendo event, typed by its name.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `call.uploaded`: a call analysis is available.
    CallUploaded(CallUploaded),
    /// `ai.training.completed`: an AI training session is completed.
    AiTrainingCompleted(AiTrainingCompleted),
    /// An event this version of the crate does not know, with its raw `data`.
    Other {
        /// The event name from the body.
        name: String,
        /// The `data` object as sent.
        data: Value,
    },
}

impl Event {
    /// Parses `data` (a JSON object) as the event named `name`.
    pub(crate) fn from_data(name: &str, data: &str) -> Result<Self, Rejection> {
        let mut deserializer = serde_json::Deserializer::from_str(data);
        let event = TypedData(name)
            .deserialize(&mut deserializer)
            .and_then(|event| deserializer.end().map(|()| event));
        event.map_err(|_| Rejection::MalformedEnvelope)
    }

    /// A known event must carry its own id (`callId`, `trainingId`).
    pub(crate) fn check_object_id(&self) -> Result<(), Rejection> {
        let id = match self {
            Self::CallUploaded(call) => &call.call_id,
            Self::AiTrainingCompleted(training) => &training.training_id,
            Self::Other { .. } => return Ok(()),
        };
        if id.is_empty() {
            return Err(Rejection::MissingObjectId);
        }
        Ok(())
    }

    /// Whether `data._isTest` is `true`.
    #[must_use]
    pub fn is_test(&self) -> bool {
        match self {
            Self::CallUploaded(call) => call.is_test,
            Self::AiTrainingCompleted(training) => training.is_test,
            Self::Other { data, .. } => data.get("_isTest") == Some(&Value::Bool(true)),
        }
    }
}

/// `data` of a `call.uploaded` event.
///
/// It serialises back to the camelCase `data` Kendo sends (unset fields
/// left out). Build one for your tests with [`CallUploaded::builder`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallUploaded {
    /// The call's id (required).
    #[serde(default, deserialize_with = "lenient_string_id")]
    pub call_id: String,
    /// The AI agent's id.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_id: Option<String>,
    /// The AI agent's display name.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_name: Option<String>,
    /// The Kendo user the call belongs to.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<String>,
    /// The team member who took the call.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub team_member_user_id: Option<String>,
    /// Length of the call in seconds (may be fractional).
    #[serde(
        default,
        deserialize_with = "lenient_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<f64>,
    /// The AI score; Kendo sends it as a string holding a number.
    #[serde(
        default,
        deserialize_with = "lenient_number",
        serialize_with = "number_as_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub ai_score: Option<f64>,
    /// When the call happened, as sent (ISO 8601).
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<String>,
    /// `_isTest`: set on deliveries from "Send Test".
    #[serde(
        default,
        rename = "_isTest",
        deserialize_with = "lenient_bool",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub is_test: bool,
}

/// `data` of an `ai.training.completed` event.
///
/// It serialises back to the camelCase `data` Kendo sends (unset fields
/// left out). Build one for your tests with [`AiTrainingCompleted::builder`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AiTrainingCompleted {
    /// The training session's id (required).
    #[serde(default, deserialize_with = "lenient_string_id")]
    pub training_id: String,
    /// The AI agent's id.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_id: Option<String>,
    /// The AI agent's display name.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_name: Option<String>,
    /// The Kendo user the training belongs to.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<String>,
    /// The team member who trained.
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub team_member_user_id: Option<String>,
    /// Length of the session in seconds (may be fractional).
    #[serde(
        default,
        deserialize_with = "lenient_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<f64>,
    /// The AI score; Kendo sends it as a string holding a number.
    #[serde(
        default,
        deserialize_with = "lenient_number",
        serialize_with = "number_as_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub ai_score: Option<f64>,
    /// When the session completed, as sent (ISO 8601).
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<String>,
    /// `_isTest`: set on deliveries from "Send Test".
    #[serde(
        default,
        rename = "_isTest",
        deserialize_with = "lenient_bool",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub is_test: bool,
}

macro_rules! payload_builder {
    (
        $payload:ident, $builder:ident, $id:ident, $id_doc:literal, $example:literal
    ) => {
        impl $payload {
            #[doc = concat!("A builder of `", stringify!($payload), "` with ", $id_doc, " set and every other field unset,")]
            /// for your own tests (the struct is `#[non_exhaustive]`).
            ///
            /// ```
            #[doc = $example]
            /// ```
            pub fn builder($id: impl Into<String>) -> $builder {
                $builder {
                    payload: Self {
                        $id: $id.into(),
                        agent_id: None,
                        agent_name: None,
                        user_id: None,
                        team_member_user_id: None,
                        duration: None,
                        ai_score: None,
                        timestamp: None,
                        is_test: false,
                    },
                }
            }
        }

        #[doc = concat!("Builder of [`", stringify!($payload), "`], from [`", stringify!($payload), "::builder`].")]
        #[derive(Debug, Clone)]
        #[must_use]
        pub struct $builder {
            payload: $payload,
        }

        impl $builder {
            /// Sets `agentId`.
            pub fn agent_id(mut self, agent_id: impl Into<String>) -> Self {
                self.payload.agent_id = Some(agent_id.into());
                self
            }

            /// Sets `agentName`.
            pub fn agent_name(mut self, agent_name: impl Into<String>) -> Self {
                self.payload.agent_name = Some(agent_name.into());
                self
            }

            /// Sets `userId`.
            pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
                self.payload.user_id = Some(user_id.into());
                self
            }

            /// Sets `teamMemberUserId`.
            pub fn team_member_user_id(mut self, user_id: impl Into<String>) -> Self {
                self.payload.team_member_user_id = Some(user_id.into());
                self
            }

            /// Sets `duration`, in seconds.
            pub fn duration(mut self, seconds: f64) -> Self {
                self.payload.duration = Some(seconds);
                self
            }

            /// Sets `aiScore` (sent as a string holding the number, as Kendo does).
            pub fn ai_score(mut self, score: f64) -> Self {
                self.payload.ai_score = Some(score);
                self
            }

            /// Sets `timestamp` (ISO 8601, as sent).
            pub fn timestamp(mut self, timestamp: impl Into<String>) -> Self {
                self.payload.timestamp = Some(timestamp.into());
                self
            }

            /// Sets `_isTest`, as on deliveries from "Send Test".
            pub fn is_test(mut self, is_test: bool) -> Self {
                self.payload.is_test = is_test;
                self
            }

            #[doc = concat!("The `", stringify!($payload), "`.")]
            #[must_use]
            pub fn build(self) -> $payload {
                self.payload
            }
        }

        impl From<$payload> for Event {
            fn from(payload: $payload) -> Self {
                Self::$payload(payload)
            }
        }
    };
}

payload_builder!(
    CallUploaded,
    CallUploadedBuilder,
    call_id,
    "`callId`",
    r#"use kendo_webhooks::CallUploaded;

let call = CallUploaded::builder("call_1").agent_name("Ada").ai_score(87.0).build();
assert_eq!(call.call_id, "call_1");
assert_eq!(call.ai_score, Some(87.0));
assert_eq!(call.duration, None);"#
);

payload_builder!(
    AiTrainingCompleted,
    AiTrainingCompletedBuilder,
    training_id,
    "`trainingId`",
    r#"use kendo_webhooks::AiTrainingCompleted;

let training = AiTrainingCompleted::builder("training_1").duration(300.0).build();
assert_eq!(training.training_id, "training_1");
assert_eq!(training.duration, Some(300.0));"#
);

/// A field value of any JSON type, so an unexpected type can be turned into
/// `None` instead of an error. Objects and arrays are skipped, not built.
enum Loose<'de> {
    Str(Cow<'de, str>),
    Num(f64),
    Bool(bool),
    Other,
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LooseVisitor;

        impl<'de> serde::de::Visitor<'de> for LooseVisitor {
            type Value = Loose<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Loose<'de>, E> {
                Ok(Loose::Str(Cow::Owned(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Loose<'de>, E> {
                Ok(Loose::Num(v))
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_i64<E>(self, v: i64) -> Result<Loose<'de>, E> {
                Ok(Loose::Num(v as f64))
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_u64<E>(self, v: u64) -> Result<Loose<'de>, E> {
                Ok(Loose::Num(v as f64))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Loose<'de>, E> {
                Ok(Loose::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_none<E>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Loose<'de>, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Loose<'de>, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Loose::Other)
            }
        }

        d.deserialize_any(LooseVisitor)
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Str(s) => Some(s.into_owned()),
        _ => None,
    })
}

/// An object id: must be a string; anything else reads as missing.
fn lenient_string_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Str(s) => s.into_owned(),
        _ => String::new(),
    })
}

fn lenient_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Num(n) => Some(n),
        Loose::Str(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    })
}

/// `aiScore` as Kendo sends it: a string holding the number (`"87"`).
fn number_as_string<S: serde::Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(number) => s.serialize_str(&number.to_string()),
        None => s.serialize_none(),
    }
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(matches!(Loose::deserialize(d)?, Loose::Bool(true)))
}
