"""A mailgate gRPC client as a Python user writes one, from stubs that Debian's
grpc_tools.protoc generated from proto/mailgate/v1/mail.proto.

Usage: python3 mailgate_client.py HOST:PORT FROM TO   (the API key in MAILGATE_API_KEY;
the generated modules on PYTHONPATH). It sends one message with save_to_sent_items false
and one without it, reads the first back with GetMessage, tries a call without a key, and
prints what it got as one JSON object.
"""

import json
import os
import sys

import grpc
from google.protobuf import wrappers_pb2

from mailgate.v1 import mail_pb2, mail_pb2_grpc


def main():
    addr, sender, rcpt = sys.argv[1:4]
    auth = [("authorization", "Bearer " + os.environ["MAILGATE_API_KEY"])]
    with grpc.insecure_channel(addr) as channel:
        stub = mail_pb2_grpc.MailServiceStub(channel)

        def send(subject, **fields):
            # "from" is a Python keyword, so it goes in as a dict key.
            req = mail_pb2.SendMailRequest(
                subject=subject,
                text="sent from Python\n",
                to=[mail_pb2.Address(address=rcpt)],
                **{"from": mail_pb2.Address(address=sender)},
                **fields,
            )
            return stub.SendMail(req, metadata=auth, timeout=20)

        nocopy = send("no copy", save_to_sent_items=wrappers_pb2.BoolValue(value=False))
        default = send("backend default")
        got = stub.GetMessage(mail_pb2.GetMessageRequest(id=nocopy.id), metadata=auth, timeout=20)
        try:
            stub.GetMessage(mail_pb2.GetMessageRequest(id=nocopy.id), timeout=20)
            unauthenticated = "OK"
        except grpc.RpcError as e:
            unauthenticated = e.code().name

    def sent(r):
        return {"id": r.id, "status": mail_pb2.Status.Name(r.status), "backend": r.backend,
                "accepted": list(r.accepted_recipients)}

    print(json.dumps({
        "sent": [sent(nocopy), sent(default)],
        "get": {"id": got.id, "from": getattr(got, "from"), "status": mail_pb2.Status.Name(got.status),
                "route": got.route, "accepted": list(got.accepted_recipients)},
        "unauthenticated": unauthenticated,
    }))


if __name__ == "__main__":
    main()
