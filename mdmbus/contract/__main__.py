"""``python -m mdmbus.contract``: developer commands for the contract.

- ``docs``: print docs/contract.md generated from the schemas;
- ``compat``: check every current schema still reads its released versions (exit 1 on a break,
  naming each field that broke);
- ``compat WRITER.avsc READER.avsc``: the same check for any two schema files;
- ``inline-envelope``: copy ``_envelope.avsc`` into every top-level schema after editing it;
- ``fingerprints``: print kind, fingerprint (wire hex and signed decimal) and file of each schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mdmbus.canonical import to_signed64
from mdmbus.contract.compat import check_released, incompatibilities
from mdmbus.contract.docs import render, sort_key
from mdmbus.contract.registry import ENVELOPE_FILE, SCHEMA_DIR, default_registry

__all__ = ["main"]


def _compat(args: list[str]) -> int:
    if len(args) == 2:
        writer, reader = (json.loads(Path(a).read_text(encoding="utf-8")) for a in args)
        problems = incompatibilities(reader.get("name", "?"), writer, reader)
    elif not args:
        problems = check_released(default_registry())
    else:
        print("usage: python -m mdmbus.contract compat [WRITER.avsc READER.avsc]", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    if not problems:
        print("compatible")
    return 1 if problems else 0


def _inline_envelope(directory: Path = SCHEMA_DIR) -> int:
    envelope = json.loads((directory / ENVELOPE_FILE).read_text(encoding="utf-8"))
    for path in sorted(directory.glob("*.avsc")):
        if path.name.startswith("_"):
            continue
        schema = json.loads(path.read_text(encoding="utf-8"))
        if schema["fields"][0]["type"] != envelope:
            schema["fields"][0]["type"] = envelope
            path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
            print(f"updated {path.name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one developer command; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["docs"]:
        sys.stdout.write(render(default_registry()))
        return 0
    if args[:1] == ["compat"]:
        return _compat(args[1:])
    if args[:1] == ["inline-envelope"]:
        return _inline_envelope()
    if args[:1] == ["fingerprints"]:
        registry = default_registry()
        for kind in sorted(registry.kinds, key=sort_key):
            spec = registry.kinds[kind]
            value = to_signed64(int.from_bytes(spec.fingerprint, "little"))
            print(f"{kind}\t{spec.fingerprint.hex()}\t{value}\t{spec.path.name}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
