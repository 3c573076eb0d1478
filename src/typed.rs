//! A user's own `serde` struct as the session's content, one hash field per struct field.

use std::fmt;
use std::marker::PhantomData;

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use serde::de::{DeserializeOwned, Deserializer, Visitor};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::extract::MissingSession;
use crate::session::Session;
use crate::store::RESERVED_PREFIX;

/// The current request's session seen as a `T`: each field of `T` is its own session key, so it
/// is its own hash field in Redis (`HGET session:… theme` gives `"dark"`).
///
/// Saving writes only the fields whose value changed, like [`Session::insert`] does for keys: two
/// requests that change different fields of one `T` both keep their change. Fields missing from
/// the session read as they are in `T::default()`; keys of the session that are not fields of `T`
/// are left alone.
///
/// `T` must be a struct with named fields (not flattened), and their names must not start with
/// `$`, which the crate reserves.
///
/// # Examples
///
/// ```
/// use axum_redis_session::{Error, TypedSession};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Cart {
///     items: Vec<String>,
///     coupon: Option<String>,
/// }
///
/// async fn add(cart: TypedSession<Cart>, item: String) -> Result<String, Error> {
///     let count = cart.update(|cart| {
///         cart.items.push(item);
///         cart.items.len()
///     }).await?;
///     Ok(format!("{count} items"))
/// }
/// ```
pub struct TypedSession<T> {
    session: Session,
    _content: PhantomData<fn() -> T>,
}

impl<T> Clone for TypedSession<T> {
    fn clone(&self) -> Self {
        self.session.clone().into()
    }
}

impl<T> fmt::Debug for TypedSession<T> {
    // Never prints the session's data; the session's own Debug shows only its key id prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSession")
            .field("session", &self.session)
            .finish()
    }
}

impl<T> From<Session> for TypedSession<T> {
    fn from(session: Session) -> Self {
        Self {
            session,
            _content: PhantomData,
        }
    }
}

impl<T> TypedSession<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    /// Reads the session as a `T` (loading it on first use, like [`Session::get`]). A field the
    /// session does not hold reads as it is in `T::default()`.
    ///
    /// A stored field that does not deserialize is [`Error::Corrupt`], naming `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Cart { items: Vec<String> }
    /// # async fn handler(cart: axum_redis_session::TypedSession<Cart>) -> Result<(), axum_redis_session::Error> {
    /// let cart: Cart = cart.get().await?;
    /// println!("{} items", cart.items.len());
    /// # Ok(()) }
    /// ```
    pub async fn get(&self) -> Result<T, Error> {
        let mut fields = to_map(&T::default())?;
        for &name in field_names::<T>()? {
            if let Some(json) = self.session.read_field(name).await? {
                let value = serde_json::from_str(&json).map_err(|source| corrupt(name, source))?;
                fields.insert(name.to_owned(), value);
            }
        }
        T::deserialize(Value::Object(fields))
            .map_err(|source| corrupt(std::any::type_name::<T>(), source))
    }

    /// Stores `value`: the fields whose value differs from the session's are saved when the request
    /// ends; the others are not written at all. A field that `value` leaves out when serialized
    /// (`skip_serializing_if`) is removed.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Cart { items: Vec<String> }
    /// # async fn handler(cart: axum_redis_session::TypedSession<Cart>) -> Result<(), axum_redis_session::Error> {
    /// cart.set(&Cart { items: vec!["tea".into()] }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, value: &T) -> Result<(), Error> {
        let new = to_map(value)?;
        for &name in field_names::<T>()? {
            let json = new.get(name).map(Value::to_string);
            if self.session.read_field(name).await? != json {
                self.session.write_json(name.to_owned(), json);
            }
        }
        Ok(())
    }

    /// Reads the session as a `T`, lets `change` modify it, and stores the fields it changed.
    /// Returns what `change` returns.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Cart { items: Vec<String> }
    /// # async fn handler(cart: axum_redis_session::TypedSession<Cart>) -> Result<(), axum_redis_session::Error> {
    /// cart.update(|cart| cart.items.clear()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn update<R>(&self, change: impl FnOnce(&mut T) -> R) -> Result<R, Error> {
        let mut value = self.get().await?;
        let result = change(&mut value);
        self.set(&value).await?;
        Ok(result)
    }

    /// The untyped session underneath, for what the session does beyond its content: cycling the
    /// id, binding a user, destroying it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[derive(Default, serde::Serialize, serde::Deserialize)] struct Cart { items: Vec<String> }
    /// # fn handler(cart: axum_redis_session::TypedSession<Cart>) {
    /// cart.session().destroy();
    /// # }
    /// ```
    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl<S: Send + Sync, T> FromRequestParts<S> for TypedSession<T> {
    type Rejection = MissingSession;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Session::from_request_parts(parts, state)
            .await
            .map(Into::into)
    }
}

/// The names of `T`'s fields, as serde's derive declares them to a deserializer (renames applied,
/// skipped fields included): each is one session key.
fn field_names<T: DeserializeOwned>() -> Result<&'static [&'static str], Error> {
    let mut names = None;
    // The probe fails every deserialization; it only looks at what a struct asks for.
    let _ = T::deserialize(FieldNames(&mut names));
    let names = names
        .ok_or_else(|| not_a_struct::<T>("a typed session must be a struct with named fields"))?;
    match names.iter().find(|name| name.starts_with(RESERVED_PREFIX)) {
        Some(name) => Err(Error::ReservedKey((*name).to_owned())),
        None => Ok(names),
    }
}

/// A deserializer that records the field names a struct asks for, and gives it nothing.
struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(serde::de::Error::custom("field names recorded"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// `value` as a JSON map of its fields.
fn to_map<T: Serialize>(value: &T) -> Result<Map<String, Value>, Error> {
    match serde_json::to_value(value) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(not_a_struct::<T>("a typed session must serialize to a map")),
        Err(source) => Err(Error::Serialize {
            key: std::any::type_name::<T>().to_owned(),
            source,
        }),
    }
}

fn not_a_struct<T>(reason: &str) -> Error {
    Error::Serialize {
        key: std::any::type_name::<T>().to_owned(),
        source: serde::ser::Error::custom(reason),
    }
}

fn corrupt(key: &str, source: serde_json::Error) -> Error {
    Error::Corrupt {
        key: key.to_owned(),
        source: source.into(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::{MemoryStore, SessionLayer};

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Prefs {
        theme: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        font: Option<u32>,
    }

    fn typed<T>() -> TypedSession<T> {
        let layer = SessionLayer::new(MemoryStore::default());
        Session::new(
            layer.shared(),
            None,
            false,
            crate::devices::Client::default(),
            tracing::Span::none(),
        )
        .into()
    }

    #[tokio::test]
    async fn an_empty_session_reads_as_the_default() {
        assert_eq!(typed::<Prefs>().get().await.unwrap(), Prefs::default());
    }

    #[tokio::test]
    async fn only_changed_fields_are_recorded_and_skipped_ones_removed() {
        let prefs = typed::<Prefs>();
        prefs.session().insert("theme", "dark").unwrap();
        prefs.session().insert("font", 12).unwrap();
        prefs
            .set(&Prefs {
                theme: "dark".into(),
                font: None,
            })
            .await
            .unwrap();
        assert_eq!(prefs.session().get::<u32>("font").await.unwrap(), None);
        let changed = prefs.update(|p| p.font = Some(14)).await;
        assert!(changed.is_ok());
        assert_eq!(
            prefs.get().await.unwrap(),
            Prefs {
                theme: "dark".into(),
                font: Some(14)
            }
        );
    }

    #[tokio::test]
    async fn a_type_that_is_not_a_map_is_a_serialize_error() {
        assert!(matches!(
            typed::<u32>().set(&7).await,
            Err(Error::Serialize { .. })
        ));
    }

    #[tokio::test]
    async fn a_field_of_the_wrong_type_is_corrupt_naming_the_type() {
        let prefs = typed::<Prefs>();
        prefs.session().insert("font", "large").unwrap();
        assert!(
            matches!(prefs.get().await, Err(Error::Corrupt { key, .. }) if key.ends_with("::Prefs"))
        );
        prefs.session().insert("font", 12).unwrap();
        assert_eq!(prefs.get().await.unwrap().font, Some(12));
    }

    #[tokio::test]
    async fn reserved_field_names_are_refused() {
        #[derive(Default, Serialize, Deserialize)]
        struct Sneaky {
            #[serde(rename = "$user")]
            user: String,
        }
        assert!(matches!(
            typed::<Sneaky>().set(&Sneaky::default()).await,
            Err(Error::ReservedKey(name)) if name == "$user"
        ));
    }
}
