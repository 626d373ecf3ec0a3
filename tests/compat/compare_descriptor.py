"""Compares Joblet-rs's compiled joblet.proto with the descriptor inside the installed
joblet-sdk-python: every service, method (types, streaming), message, field (name, number,
type, label, type name) and enum must match. Usage: compare_descriptor.py OURS.bin
(OURS.bin is an encoded FileDescriptorSet)."""

import sys

from google.protobuf import descriptor_pb2
from joblet.proto import joblet_pb2


def index(fd):
    out = {}
    for s in fd.service:
        for m in s.method:
            out[f"rpc {s.name}.{m.name}"] = (
                m.input_type, m.output_type, m.client_streaming, m.server_streaming)

    def walk(prefix, msgs, enums):
        for e in enums:
            out[f"enum {prefix}{e.name}"] = tuple((v.name, v.number) for v in e.value)
        for m in msgs:
            name = f"{prefix}{m.name}"
            out[f"message {name}"] = True
            for f in m.field:
                out[f"field {name}.{f.name}"] = (
                    f.number, f.type, f.label, f.type_name,
                    f.HasField("oneof_index") and not f.proto3_optional)
            walk(name + ".", m.nested_type, m.enum_type)

    walk("", fd.message_type, fd.enum_type)
    return out


def main(path):
    theirs = descriptor_pb2.FileDescriptorProto()
    joblet_pb2.DESCRIPTOR.CopyToProto(theirs)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as fh:
        fds.ParseFromString(fh.read())
    ours = next(f for f in fds.file if f.package == "joblet")
    a, b = index(theirs), index(ours)
    problems = []
    for k in sorted(set(a) | set(b)):
        if k not in b:
            problems.append(f"missing in ours: {k}")
        elif k not in a:
            problems.append(f"extra in ours: {k}")
        elif a[k] != b[k]:
            problems.append(f"differs: {k}: sdk {a[k]} ours {b[k]}")
    if theirs.package != ours.package:
        problems.append(f"package {ours.package} != {theirs.package}")
    for p in problems:
        print(p)
    print(f"compared {len(a)} items: {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
