//! Protobuf schemas from a `FileDescriptorSet` (`--proto-descriptor`): which message type a
//! gRPC method answers with, and each message's field names, types and labels, so decoded
//! gRPC bodies read `$.msg[0].address.zip` instead of `$.msg[0].3.2`.
//!
//! Only what decoding needs is kept: full type names, fields by number, enum value names and
//! `/pkg.Service/Method` -> output type. Anything the set does not describe is decoded
//! schema-less, so a stale descriptor degrades to field numbers rather than failing.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::method_options::IdempotencyLevel;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// How a field's value is laid out on the wire and shown in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `double`: fixed64 read as IEEE 754.
    Double,
    /// `float`: fixed32 read as IEEE 754.
    Float,
    /// `int32`, `int64`: varint, two's complement.
    Int,
    /// `uint32`, `uint64`: varint.
    Uint,
    /// `sint32`, `sint64`: zigzag varint.
    Sint,
    /// `fixed32`: unsigned, four bytes.
    Fixed32,
    /// `fixed64`: unsigned, eight bytes.
    Fixed64,
    /// `sfixed32`: signed, four bytes.
    Sfixed32,
    /// `sfixed64`: signed, eight bytes.
    Sfixed64,
    /// `bool`: varint 0 or 1.
    Bool,
    /// `enum`: varint, shown by value name when known.
    Enum,
    /// `string`: UTF-8.
    String,
    /// `bytes`: shown as base64, as in the proto3 JSON mapping.
    Bytes,
    /// A nested message (length-delimited).
    Message,
    /// A nested group (deprecated start/end-group encoding).
    Group,
}

impl FieldType {
    /// Scalars that proto3 packs into one length-delimited record when repeated.
    pub fn packable(self) -> bool {
        !matches!(
            self,
            FieldType::String | FieldType::Bytes | FieldType::Message | FieldType::Group
        )
    }
}

/// One field of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// The field's name as written in the `.proto` file.
    pub name: String,
    /// Its type.
    pub ty: FieldType,
    /// `repeated` (shown as an array even with one element).
    pub repeated: bool,
    /// Full name of the message or enum type, without the leading dot.
    pub type_name: Option<String>,
}

/// One message type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageInfo {
    /// Fields by number.
    pub fields: HashMap<u32, FieldInfo>,
    /// A synthesized `map<K, V>` entry type: shown as a JSON object keyed by `K`.
    pub map_entry: bool,
}

/// The input and output message types of one gRPC method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodInfo {
    /// Full name of the request type, without the leading dot.
    pub input: String,
    /// Full name of the response type, without the leading dot.
    pub output: String,
    /// `option idempotency_level` is `NO_SIDE_EFFECTS` or `IDEMPOTENT`: the call may be
    /// sent more than once.
    pub repeatable: bool,
}

/// Every message, enum and method of a `FileDescriptorSet`, indexed for decoding.
#[derive(Clone, Default, PartialEq)]
pub struct Descriptors {
    messages: HashMap<String, MessageInfo>,
    enums: HashMap<String, HashMap<i32, String>>,
    methods: HashMap<String, MethodInfo>,
}

impl fmt::Debug for Descriptors {
    // The tables can hold thousands of entries; options are printed in logs, so only sizes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Descriptors")
            .field("messages", &self.messages.len())
            .field("enums", &self.enums.len())
            .field("methods", &self.methods.len())
            .finish()
    }
}

/// A full name without its leading dot (descriptors write `.pkg.Msg`).
fn bare(name: &str) -> &str {
    name.strip_prefix('.').unwrap_or(name)
}

fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{scope}.{name}")
    }
}

fn field_type(t: Type) -> FieldType {
    match t {
        Type::Double => FieldType::Double,
        Type::Float => FieldType::Float,
        Type::Int64 | Type::Int32 => FieldType::Int,
        Type::Uint64 | Type::Uint32 => FieldType::Uint,
        Type::Sint32 | Type::Sint64 => FieldType::Sint,
        Type::Fixed32 => FieldType::Fixed32,
        Type::Fixed64 => FieldType::Fixed64,
        Type::Sfixed32 => FieldType::Sfixed32,
        Type::Sfixed64 => FieldType::Sfixed64,
        Type::Bool => FieldType::Bool,
        Type::Enum => FieldType::Enum,
        Type::String => FieldType::String,
        Type::Bytes => FieldType::Bytes,
        Type::Message => FieldType::Message,
        Type::Group => FieldType::Group,
    }
}

impl Descriptors {
    /// Reads a binary `FileDescriptorSet` (`protoc --include_imports --descriptor_set_out`,
    /// `buf build -o`). Fails with a message saying what the bytes are not.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let set = FileDescriptorSet::decode(bytes)
            .map_err(|e| format!("not a binary FileDescriptorSet ({e})"))?;
        if set.file.is_empty() {
            return Err("the FileDescriptorSet describes no files".into());
        }
        let mut d = Descriptors::default();
        for file in &set.file {
            let package = file.package();
            for m in &file.message_type {
                d.add_message(package, m);
            }
            for e in &file.enum_type {
                d.add_enum(package, e);
            }
            for s in &file.service {
                let service = qualify(package, s.name());
                for m in &s.method {
                    d.methods.insert(
                        format!("/{service}/{}", m.name()),
                        MethodInfo {
                            input: bare(m.input_type()).to_string(),
                            output: bare(m.output_type()).to_string(),
                            repeatable: m.options.as_ref().is_some_and(|o| {
                                matches!(
                                    o.idempotency_level(),
                                    IdempotencyLevel::NoSideEffects | IdempotencyLevel::Idempotent
                                )
                            }),
                        },
                    );
                }
            }
        }
        Ok(d)
    }

    /// Reads and indexes the descriptor set at `path`.
    pub fn load(path: &Path) -> crate::error::Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| crate::error::Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| {
            crate::error::Error::Usage(format!(
                "--proto-descriptor {}: {e}; build one with `protoc --include_imports \
                 --descriptor_set_out=FILE your.proto`",
                path.display()
            ))
        })
    }

    fn add_message(&mut self, scope: &str, m: &DescriptorProto) {
        let name = qualify(scope, m.name());
        let mut info = MessageInfo {
            fields: HashMap::with_capacity(m.field.len()),
            map_entry: m.options.as_ref().is_some_and(|o| o.map_entry()),
        };
        for f in &m.field {
            let Ok(number) = u32::try_from(f.number()) else {
                continue;
            };
            info.fields.insert(
                number,
                FieldInfo {
                    name: f.name().to_string(),
                    ty: field_type(f.r#type()),
                    repeated: f.label() == Label::Repeated,
                    type_name: f
                        .type_name
                        .as_deref()
                        .filter(|t| !t.is_empty())
                        .map(|t| bare(t).to_string()),
                },
            );
        }
        for nested in &m.nested_type {
            self.add_message(&name, nested);
        }
        for e in &m.enum_type {
            self.add_enum(&name, e);
        }
        self.messages.insert(name, info);
    }

    fn add_enum(&mut self, scope: &str, e: &EnumDescriptorProto) {
        let values = e
            .value
            .iter()
            .map(|v| (v.number(), v.name().to_string()))
            .collect();
        self.enums.insert(qualify(scope, e.name()), values);
    }

    /// The request paths (`/pkg.Service/Method`) of the methods that may be sent more
    /// than once.
    pub fn repeatable_paths(&self) -> std::collections::HashSet<String> {
        self.methods
            .iter()
            .filter(|(_, m)| m.repeatable)
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// The method at a gRPC request path (`/pkg.Service/Method`).
    pub fn method(&self, path: &str) -> Option<&MethodInfo> {
        self.methods.get(path)
    }

    /// A message type by full name (with or without the leading dot).
    pub fn message(&self, name: &str) -> Option<&MessageInfo> {
        self.messages.get(bare(name))
    }

    /// The name of value `number` of enum type `name`, when the set lists it.
    pub fn enum_value(&self, name: &str, number: i32) -> Option<&str> {
        self.enums.get(bare(name))?.get(&number).map(String::as_str)
    }

    /// Number of message types described (for logging what was loaded).
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Number of gRPC methods described.
    pub fn method_count(&self) -> usize {
        self.methods.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use prost_types::{
        EnumValueDescriptorProto, FieldDescriptorProto, FileDescriptorProto, MessageOptions,
        MethodDescriptorProto, ServiceDescriptorProto,
    };

    fn field(name: &str, number: i32, ty: Type, type_name: Option<&str>) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            r#type: Some(ty as i32),
            type_name: type_name.map(str::to_string),
            ..Default::default()
        }
    }

    fn repeated(mut f: FieldDescriptorProto) -> FieldDescriptorProto {
        f.label = Some(Label::Repeated as i32);
        f
    }

    /// `pkg.User { id, name, address: Address { city, zip }, tags[], role: Role,
    /// attrs: map<string, int64>, scores[] (packed double) }` and `pkg.Svc/GetUser`.
    pub(crate) fn sample_set() -> FileDescriptorSet {
        let address = DescriptorProto {
            name: Some("Address".into()),
            field: vec![
                field("city", 1, Type::String, None),
                field("zip", 2, Type::Uint32, None),
            ],
            ..Default::default()
        };
        let attrs_entry = DescriptorProto {
            name: Some("AttrsEntry".into()),
            field: vec![
                field("key", 1, Type::String, None),
                field("value", 2, Type::Int64, None),
            ],
            options: Some(MessageOptions {
                map_entry: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let user = DescriptorProto {
            name: Some("User".into()),
            field: vec![
                field("id", 1, Type::Uint64, None),
                field("name", 2, Type::String, None),
                field("address", 3, Type::Message, Some(".pkg.User.Address")),
                repeated(field("tags", 4, Type::String, None)),
                field("role", 5, Type::Enum, Some(".pkg.Role")),
                repeated(field(
                    "attrs",
                    6,
                    Type::Message,
                    Some(".pkg.User.AttrsEntry"),
                )),
                repeated(field("scores", 7, Type::Double, None)),
                field("delta", 8, Type::Sint64, None),
                field("active", 9, Type::Bool, None),
            ],
            nested_type: vec![address, attrs_entry],
            ..Default::default()
        };
        let req = DescriptorProto {
            name: Some("UserRequest".into()),
            field: vec![field("id", 1, Type::Uint64, None)],
            ..Default::default()
        };
        let role = EnumDescriptorProto {
            name: Some("Role".into()),
            value: vec![
                EnumValueDescriptorProto {
                    name: Some("ROLE_UNSPECIFIED".into()),
                    number: Some(0),
                    ..Default::default()
                },
                EnumValueDescriptorProto {
                    name: Some("ADMIN".into()),
                    number: Some(2),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let svc = ServiceDescriptorProto {
            name: Some("Svc".into()),
            method: vec![MethodDescriptorProto {
                name: Some("GetUser".into()),
                input_type: Some(".pkg.UserRequest".into()),
                output_type: Some(".pkg.User".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("pkg.proto".into()),
                package: Some("pkg".into()),
                message_type: vec![user, req],
                enum_type: vec![role],
                service: vec![svc],
                syntax: Some("proto3".into()),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn indexes_nested_types_enums_and_methods() {
        let d = Descriptors::from_bytes(&sample_set().encode_to_vec()).unwrap();
        let m = d.method("/pkg.Svc/GetUser").unwrap();
        assert_eq!(m.output, "pkg.User");
        assert_eq!(m.input, "pkg.UserRequest");
        let user = d.message(".pkg.User").unwrap();
        assert_eq!(user.fields[&3].name, "address");
        assert_eq!(
            user.fields[&3].type_name.as_deref(),
            Some("pkg.User.Address")
        );
        assert!(user.fields[&4].repeated);
        assert!(d.message("pkg.User.Address").is_some());
        assert!(d.message("pkg.User.AttrsEntry").unwrap().map_entry);
        assert_eq!(d.enum_value(".pkg.Role", 2), Some("ADMIN"));
        assert_eq!(d.enum_value("pkg.Role", 7), None);
        assert_eq!((d.message_count(), d.method_count()), (4, 1));
        assert!(format!("{d:?}").contains("methods: 1"));
    }

    #[test]
    fn methods_declared_free_of_side_effects_or_idempotent_are_repeatable() {
        use prost_types::MethodOptions;
        let mut set = sample_set();
        let level = |l: IdempotencyLevel, name: &str| MethodDescriptorProto {
            name: Some(name.into()),
            input_type: Some(".pkg.UserRequest".into()),
            output_type: Some(".pkg.User".into()),
            options: Some(MethodOptions {
                idempotency_level: Some(l as i32),
                ..Default::default()
            }),
            ..Default::default()
        };
        let svc = &mut set.file[0].service[0];
        svc.method
            .push(level(IdempotencyLevel::NoSideEffects, "ListUsers"));
        svc.method
            .push(level(IdempotencyLevel::Idempotent, "PutUser"));
        svc.method
            .push(level(IdempotencyLevel::IdempotencyUnknown, "CreateUser"));
        let d = Descriptors::from_bytes(&set.encode_to_vec()).unwrap();
        let mut paths: Vec<String> = d.repeatable_paths().into_iter().collect();
        paths.sort();
        // `GetUser` declares nothing: a name is no proof.
        assert_eq!(paths, ["/pkg.Svc/ListUsers", "/pkg.Svc/PutUser"]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Descriptors::from_bytes(b"\xff\xff\xff").is_err());
        assert!(Descriptors::from_bytes(b"")
            .unwrap_err()
            .contains("no files"));
        let f = tempfile::NamedTempFile::new().unwrap();
        // A file entry whose body is a truncated varint.
        std::fs::write(f.path(), b"\x0a\x05\xff\xff\xff\xff\xff").unwrap();
        let e = Descriptors::load(f.path()).unwrap_err().to_string();
        assert!(
            e.contains("--proto-descriptor") && e.contains("protoc"),
            "{e}"
        );
        let e = Descriptors::load(Path::new("/nonexistent/x.pb")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
