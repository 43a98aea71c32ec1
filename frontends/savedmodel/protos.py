"""TensorFlow's protobuf messages, as far as Ember reads them, built at import time.

SavedModels are protobuf files (saved_model.pb: a SavedModel holding
MetaGraphDefs, their GraphDef, function library and signatures; the checkpoint
index's BundleEntryProtos). TensorFlow's own .proto files pull in much of
TensorFlow; Ember declares just the fields it reads, with TensorFlow's field
numbers, and builds the descriptors here with the protobuf runtime (which onnx
already needs), in a private descriptor pool. No generated _pb2 module means no
coupling to one protoc or protobuf version, and no clash with TensorFlow's own
registrations when both are loaded (as in the tests). Fields not declared are
kept as unknown fields and ignored.

proto3 `map<K, V>` fields are declared as repeated entry messages (key = 1,
value = 2), which is their wire form; enums as int32, which is theirs too.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool

try:  # protobuf >= 4.21
    from google.protobuf.message_factory import GetMessageClass as _message_class
except ImportError:  # pragma: no cover - older protobuf runtimes
    from google.protobuf import message_factory as _mf

    def _message_class(descriptor: Any) -> Any:
        return _mf.MessageFactory(descriptor.file.pool).GetPrototype(descriptor)

PACKAGE = "ember.tf"
F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES, "bool": F.TYPE_BOOL, "float": F.TYPE_FLOAT,
    "double": F.TYPE_DOUBLE, "int32": F.TYPE_INT32, "int64": F.TYPE_INT64, "uint32": F.TYPE_UINT32,
    "uint64": F.TYPE_UINT64, "fixed32": F.TYPE_FIXED32,
}

# message -> [(field name, number, type, "repeated" | "" | "oneof:<name>")]
SCHEMA: dict[str, list[tuple[str, int, str, str]]] = {
    # tensorflow/core/protobuf/saved_model.proto, meta_graph.proto, saver.proto
    "SavedModel": [("saved_model_schema_version", 1, "int64", ""), ("meta_graphs", 2, "MetaGraphDef", "repeated")],
    "MetaGraphDef": [("meta_info_def", 1, "MetaInfoDef", ""), ("graph_def", 2, "GraphDef", ""),
                     ("saver_def", 3, "SaverDef", ""), ("signature_def", 5, "SignatureDefEntry", "repeated"),
                     ("object_graph_def", 7, "SavedObjectGraph", "")],
    # tensorflow/core/protobuf/saved_object_graph.proto: which objects a function captures
    "SavedObjectGraph": [("concrete_functions", 2, "ConcreteFunctionEntry", "repeated")],
    "ConcreteFunctionEntry": [("key", 1, "string", ""), ("value", 2, "SavedConcreteFunction", "")],
    "SavedConcreteFunction": [("bound_inputs", 2, "int32", "repeated")],
    # tensorflow/core/protobuf/trackable_object_graph.proto (the checkpoint's object graph)
    "TrackableObjectGraph": [("nodes", 1, "TrackableObject", "repeated")],
    "TrackableObject": [("attributes", 2, "SerializedTensor", "repeated")],
    "SerializedTensor": [("name", 1, "string", ""), ("full_name", 2, "string", ""),
                         ("checkpoint_key", 3, "string", "")],
    "MetaInfoDef": [("meta_graph_version", 1, "string", ""), ("tags", 4, "string", "repeated"),
                    ("tensorflow_version", 5, "string", ""), ("tensorflow_git_version", 6, "string", "")],
    "SaverDef": [("filename_tensor_name", 1, "string", ""), ("save_tensor_name", 2, "string", ""),
                 ("restore_op_name", 3, "string", "")],
    "SignatureDefEntry": [("key", 1, "string", ""), ("value", 2, "SignatureDef", "")],
    "SignatureDef": [("inputs", 1, "TensorInfoEntry", "repeated"), ("outputs", 2, "TensorInfoEntry", "repeated"),
                     ("method_name", 3, "string", "")],
    "TensorInfoEntry": [("key", 1, "string", ""), ("value", 2, "TensorInfo", "")],
    "TensorInfo": [("name", 1, "string", "oneof:encoding"), ("composite_tensor", 5, "bytes", "oneof:encoding"),
                   ("coo_sparse", 4, "bytes", "oneof:encoding"),
                   ("dtype", 2, "int32", ""), ("tensor_shape", 3, "TensorShapeProto", "")],
    # tensorflow/core/framework/graph.proto, node_def.proto, function.proto, op_def.proto, versions.proto
    "GraphDef": [("node", 1, "NodeDef", "repeated"), ("library", 2, "FunctionDefLibrary", ""),
                 ("versions", 4, "VersionDef", "")],
    "VersionDef": [("producer", 1, "int32", ""), ("min_consumer", 2, "int32", "")],
    "NodeDef": [("name", 1, "string", ""), ("op", 2, "string", ""), ("input", 3, "string", "repeated"),
                ("device", 4, "string", ""), ("attr", 5, "AttrEntry", "repeated")],
    "AttrEntry": [("key", 1, "string", ""), ("value", 2, "AttrValue", "")],
    "AttrValue": [("list", 1, "ListValue", "oneof:value"), ("s", 2, "bytes", "oneof:value"),
                  ("i", 3, "int64", "oneof:value"), ("f", 4, "float", "oneof:value"),
                  ("b", 5, "bool", "oneof:value"), ("type", 6, "int32", "oneof:value"),
                  ("shape", 7, "TensorShapeProto", "oneof:value"), ("tensor", 8, "TensorProto", "oneof:value"),
                  ("placeholder", 9, "string", "oneof:value"), ("func", 10, "NameAttrList", "oneof:value")],
    "ListValue": [("s", 2, "bytes", "repeated"), ("i", 3, "int64", "repeated"), ("f", 4, "float", "repeated"),
                  ("b", 5, "bool", "repeated"), ("type", 6, "int32", "repeated"),
                  ("shape", 7, "TensorShapeProto", "repeated"), ("tensor", 8, "TensorProto", "repeated"),
                  ("func", 9, "NameAttrList", "repeated")],
    "NameAttrList": [("name", 1, "string", ""), ("attr", 2, "AttrEntry", "repeated")],
    "FunctionDefLibrary": [("function", 1, "FunctionDef", "repeated")],
    "FunctionDef": [("signature", 1, "OpDef", ""), ("attr", 5, "AttrEntry", "repeated"),
                    ("node_def", 3, "NodeDef", "repeated"), ("ret", 4, "StringEntry", "repeated"),
                    ("control_ret", 6, "StringEntry", "repeated")],
    "StringEntry": [("key", 1, "string", ""), ("value", 2, "string", "")],
    "OpDef": [("name", 1, "string", ""), ("input_arg", 2, "ArgDef", "repeated"),
              ("output_arg", 3, "ArgDef", "repeated"), ("control_output", 20, "string", "repeated")],
    "ArgDef": [("name", 1, "string", ""), ("type", 3, "int32", ""), ("type_attr", 4, "string", ""),
               ("number_attr", 5, "string", ""), ("type_list_attr", 6, "string", ""), ("is_ref", 16, "bool", "")],
    # tensorflow/core/framework/tensor.proto, tensor_shape.proto
    "TensorShapeProto": [("dim", 2, "Dim", "repeated"), ("unknown_rank", 3, "bool", "")],
    "Dim": [("size", 1, "int64", ""), ("name", 2, "string", "")],
    "TensorProto": [("dtype", 1, "int32", ""), ("tensor_shape", 2, "TensorShapeProto", ""),
                    ("version_number", 3, "int32", ""), ("tensor_content", 4, "bytes", ""),
                    ("half_val", 13, "int32", "repeated"), ("float_val", 5, "float", "repeated"),
                    ("double_val", 6, "double", "repeated"), ("int_val", 7, "int32", "repeated"),
                    ("string_val", 8, "bytes", "repeated"), ("scomplex_val", 9, "float", "repeated"),
                    ("int64_val", 10, "int64", "repeated"), ("bool_val", 11, "bool", "repeated"),
                    ("dcomplex_val", 12, "double", "repeated"), ("uint32_val", 16, "uint32", "repeated"),
                    ("uint64_val", 17, "uint64", "repeated"), ("float8_val", 18, "bytes", "")],
    # tensorflow/core/protobuf/tensor_bundle.proto (the checkpoint's variables.index)
    "BundleHeaderProto": [("num_shards", 1, "int32", ""), ("endianness", 2, "int32", ""),
                          ("version", 3, "VersionDef", "")],
    "BundleEntryProto": [("dtype", 1, "int32", ""), ("shape", 2, "TensorShapeProto", ""),
                         ("shard_id", 3, "int32", ""), ("offset", 4, "int64", ""), ("size", 5, "int64", ""),
                         ("crc32c", 6, "fixed32", ""), ("slices", 7, "bytes", "repeated")],
}


def _file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name="ember_tf.proto", package=PACKAGE, syntax="proto3")
    for name, fields in SCHEMA.items():
        msg = fdp.message_type.add(name=name)
        oneofs: dict[str, int] = {}
        for field_name, number, kind, how in fields:
            f = msg.field.add(name=field_name, number=number,
                              label=F.LABEL_REPEATED if how == "repeated" else F.LABEL_OPTIONAL)
            if kind in SCALARS:
                f.type = SCALARS[kind]
            else:
                f.type, f.type_name = F.TYPE_MESSAGE, f".{PACKAGE}.{kind}"
            if how.startswith("oneof:"):
                group = how.split(":", 1)[1]
                if group not in oneofs:
                    oneofs[group] = len(msg.oneof_decl)
                    msg.oneof_decl.add(name=group)
                f.oneof_index = oneofs[group]
    return fdp


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
MESSAGES: dict[str, Any] = {name: _message_class(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))
                            for name in SCHEMA}

SavedModel = MESSAGES["SavedModel"]
TensorProto = MESSAGES["TensorProto"]
BundleHeaderProto = MESSAGES["BundleHeaderProto"]
TrackableObjectGraph = MESSAGES["TrackableObjectGraph"]
BundleEntryProto = MESSAGES["BundleEntryProto"]


def entries(repeated: Any) -> dict[str, Any]:
    """A map field (repeated key/value entries) as a dict; the last entry of a key wins, as in protobuf."""
    return {e.key: e.value for e in repeated}
