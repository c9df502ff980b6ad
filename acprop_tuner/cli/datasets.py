"""``acprop-tuner datasets ...``: upload, list, show and delete a user's data sets on a server.

Built on :mod:`acprop_tuner.client` (no database, no JAX, no numpy: the server checks the
file). ``upload`` prints the data set's sha256 alone on stdout, for scripts
(``DATA=$(acprop-tuner datasets upload train.npz)``), and what the server made of it on
stderr; a job then names it: ``jobs submit --task mlp --options '{"dataset": "'$DATA'"}'``.
"""

from __future__ import annotations

import argparse
import json
import sys

from acprop_tuner.cli.jobs import client_from_args, fail, print_json
from acprop_tuner.cli.terminal import safe
from acprop_tuner.client import TOKEN_ENV, Dataset, TunerError, Unauthorized


def _arrays(d: Dataset) -> str:
    return ", ".join(
        f"{name} {v['dtype']}[{', '.join(map(str, v['shape']))}]" for name, v in d.arrays.items()
    )


def _describe(d: Dataset) -> list[tuple[str, str]]:
    target = {"classes": f"{d.classes} classes", "values": f"{d.outputs} float target(s)"}
    rows = [
        ("sha256", d.sha256),
        ("name", d.name or ""),
        ("kind", d.kind + (f", {target[d.target]}" if d.target in target else "")),
        ("arrays", _arrays(d)),
        ("validation", f"{d.validation_rows} rows (x_val)" if d.validation_rows else "held out"),
        ("families", ", ".join(d.families) or "none with their default options"),
        ("size", f"{d.size_bytes} bytes"),
        ("created", d.created_at.isoformat()),
    ]
    return rows


def datasets(args: argparse.Namespace) -> int:
    """Dispatch ``datasets upload|list|show|delete``; returns the exit code."""
    client = client_from_args(args)
    if isinstance(client, str):
        return fail(client, 2)
    try:
        with client:
            command = args.datasets_command
            if command == "upload":
                try:
                    d = client.upload_dataset(args.file, name=args.name)
                except OSError as exc:
                    return fail(f"cannot read {args.file}: {exc.strerror or exc}", 2)
                if args.json:
                    print_json(d.raw)
                    return 0
                print(d.sha256)
                for label, value in _describe(d)[1:]:
                    print(f"{label:<12}{safe(value)}", file=sys.stderr)
                return 0
            if command == "list":
                listed = list(client.datasets())
                if args.json:
                    print_json([d.raw for d in listed])
                    return 0
                print("sha256\tname\tkind\trows\tfamilies\tcreated_at")
                for d in listed:
                    cells = (d.sha256, d.name or "", d.kind, d.rows, ",".join(d.families),
                             d.created_at.isoformat())  # fmt: skip
                    print("\t".join(safe(c) for c in cells))
                return 0
            if command == "delete":
                client.delete_dataset(args.sha256)
                print(safe(f"data set {args.sha256} deleted"))
                return 0
            d = client.dataset(args.sha256)
            if args.json:
                print(json.dumps(d.raw, indent=2))
            else:
                for label, value in _describe(d):
                    print(f"{label:<12}{safe(value)}")
            return 0
    except Unauthorized as exc:
        return fail(f"{exc} (check {TOKEN_ENV})")
    except TunerError as exc:
        return fail(str(exc))
