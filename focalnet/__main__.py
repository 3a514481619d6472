"""``python -m focalnet describe [--config file.json] [--embed-dim 64 --depths 3 3 16 3 ...]``.

Flags override the config file; every FocalNetConfig field has a flag (``--patch-size``,
``--overlapped-embed`` / ``--no-overlapped-embed`` ...), and the head has ``--head heatmap --head-stage 1
--head-hidden 128`` and ``--coord-channels``. Bad input exits with code 2 and one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, NoReturn

from .config import HEAD_KINDS, FocalNetConfig, ModelConfig
from .describe import describe


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(FocalNetConfig):
        flag = "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        default = f.default
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, tuple) or f.name in ("focal_levels", "focal_windows"):
            parser.add_argument(flag, nargs="+", type=int, metavar="N", **kw)
        else:
            parser.add_argument(flag, type=type(default), **kw)


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"config: cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config: {path} must hold a JSON object")
    return data.get("model", data)  # accept a trial's resolved {"model": ..., "train": ...} too


def _config(args: argparse.Namespace) -> ModelConfig:
    data = _load(args.config) if args.config else {}
    is_model = any(k in data for k in ("backbone", "focalnet", "baseline", "num_keypoints"))
    model = dict(data) if is_model else {"focalnet": data}
    focal = dict(model.get("focalnet", {}))
    for name in (f.name for f in dataclasses.fields(FocalNetConfig)):
        if hasattr(args, name):
            value = getattr(args, name)
            # A single value for a per-stage field means "all stages".
            if name in ("focal_levels", "focal_windows") and len(value) == 1:
                value = value[0]
            focal[name] = value
    model["focalnet"] = focal
    head = dict(model.get("head", {}))
    for flag, key in (("head_kind", "kind"), ("head_stage", "stage"), ("head_hidden", "hidden")):
        if hasattr(args, flag):
            head[key] = getattr(args, flag)
    if head:
        model["head"] = head
    if hasattr(args, "coord_channels"):
        model["coord_channels"] = args.coord_channels
    return ModelConfig.from_dict(model)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m focalnet")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("describe", help="per-stage shapes, receptive fields, params and FLOPs")
    p.add_argument("--config", help="JSON file: FocalNetConfig or ModelConfig dict (flags override it)")
    _add_config_flags(p)
    p.add_argument(
        "--head", dest="head_kind", choices=HEAD_KINDS, default=argparse.SUPPRESS, help="head kind"
    )
    p.add_argument(
        "--head-stage", type=int, default=argparse.SUPPRESS, help="stage the head reads (-1 = last)"
    )
    p.add_argument("--head-hidden", type=int, nargs="*", metavar="N", default=argparse.SUPPRESS)
    p.add_argument("--coord-channels", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        text = describe(_config(args))
    except ValueError as e:
        print(f"{parser.prog} describe: error: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
