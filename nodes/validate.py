"""Boundary helpers of the nodes: errors that name the node, and safe output paths.

The core raises ValueError subclasses (AudioError, IdentityError, CheckpointError, ...) whose
message already says what to do. `user_errors` prefixes that message with the node's display
name, so the text names the node wherever it ends up (ComfyUI's error dialog, the server log,
an issue report). Anything that is not a ValueError is a bug and propagates unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch._dynamo.exc


@contextmanager
def user_errors(node: str) -> Iterator[None]:
    try:
        yield
    except ValueError as e:
        message = str(e)
        if message.startswith(f"{node}: "):
            raise
        try:
            wrapped = type(e)(f"{node}: {message}")
        except Exception:  # a ValueError subclass with a different signature (JSONDecodeError, ...)
            wrapped = ValueError(f"{node}: {message}")
        raise wrapped from e


@contextmanager
def compile_errors() -> Iterator[None]:
    """A failed torch.compile (no C++ compiler, an unsupported device or op) as a ValueError that
    says how to get going again; it surfaces at the first sampling step, not in the loader."""
    try:
        yield
    except torch._dynamo.exc.TorchDynamoException as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise ValueError(
            f"torch.compile could not compile the model ({lines[0] if lines else type(e).__name__}); switch "
            "'compile' off in the STARCaster Model Loader, or install a C++ compiler (e.g. apt install g++)"
        ) from e


def safe_prefix(prefix: str, folder: str) -> str:
    """A filename prefix that stays inside `folder` (relative to output/), or a ValueError.

    Absolute paths, '..' components, drive letters and NUL bytes are refused: a node input must
    never choose where on disk a file lands."""
    if not isinstance(prefix, str) or not prefix.strip():
        raise ValueError("filename_prefix is empty; type a name such as 'identity' or 'people/anna'")
    parts = prefix.replace("\\", "/").split("/")
    if ("\0" in prefix or os.path.isabs(prefix) or prefix.startswith(("/", "\\")) or ".." in parts
            or (len(prefix) > 1 and prefix[1] == ":")):
        raise ValueError(
            f"filename_prefix {prefix!r} would leave output/{folder}/; use a plain name such as "
            "'identity' or 'people/anna' (no '..', no absolute path)"
        )
    return os.path.join(folder, *[p for p in parts if p not in ("", ".")])


def not_in(value: object, options: list[str], what: str, fix: str) -> str | None:
    """ComfyUI 0.3.75 does not check V3 combo values against their options: nodes must.

    Returns the error text for a value outside `options` (None when it is fine, or linked)."""
    if value is None or value in options:
        return None
    shown = options if len(options) <= 8 else [*options[:8], "..."]
    return f"{what} {value!r} is not one of {shown}; {fix}"
