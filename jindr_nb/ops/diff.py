"""`diff A B`: per platform, the layers two images share and those only one has, and the config
fields that changed — with a one-line summary of what B does to A."""

from __future__ import annotations

import json
from typing import Any

from ..models import DiffRow, GcRow
from .layers import Image, Resolved, image_layers, runtime_config

__all__ = ["diff_images"]

#: Config fields compared whole, as a Dockerfile names them, with the config's own key.
_FIELDS = (("USER", "User"), ("WORKDIR", "WorkingDir"), ("ENTRYPOINT", "Entrypoint"), ("CMD", "Cmd"))


def diff_images(a: Resolved, b: Resolved) -> tuple[list[DiffRow], str]:
    """Rows of every shared and differing layer and every changed config field, per platform
    (matched by platform string), and the one-line summary."""
    side_a, side_b = _by_platform(a.images), _by_platform(b.images)
    rows: list[DiffRow] = []
    clauses: list[tuple[str, str]] = []
    for platform in dict.fromkeys([*side_a, *side_b]):
        image_a, image_b = side_a.get(platform), side_b.get(platform)
        if image_a is None or image_b is None:
            only = "A" if image_b is None else "B"
            digest = (image_a or image_b).manifest.digest  # type: ignore[union-attr]
            rows.append(
                DiffRow(
                    platform,
                    "platform",
                    f"only in {only}",
                    digest,
                    _digest_or_none(image_a),
                    _digest_or_none(image_b),
                    None,
                    "",
                )
            )
            clauses.append((platform, f"only {only} has {platform}"))
            continue
        layer_diff = _layers(platform, image_a, image_b)
        config_diff = _config(platform, image_a.config(), image_b.config())
        rows.extend(layer_diff + config_diff)
        clauses.append((platform, _clause(layer_diff, config_diff)))
    compared = [c for c in clauses if not c[1].startswith("only ")]
    if len(clauses) == 1 and compared:
        message = compared[0][1]
    else:
        message = "; ".join(text if text.startswith("only ") else f"{p}: {text}" for p, text in clauses)
    if a.digest == b.digest:
        message = f"A and B are the same image ({a.digest})"
    return rows, message or "neither image has a platform image to compare"


def _digest_or_none(image: Image | None) -> str | None:
    return image.manifest.digest if image is not None else None


def _by_platform(images: list[Image]) -> dict[str, Image]:
    found: dict[str, Image] = {}
    for image in images:
        found.setdefault(image.platform, image)
    return found


def _layers(platform: str, a: Image, b: Image) -> list[DiffRow]:
    layers_a = {layer.digest: layer for layer in image_layers(a).layers}
    layers_b = {layer.digest: layer for layer in image_layers(b).layers}
    rows = []
    for digest, layer in layers_a.items():
        other = layers_b.get(digest)
        change = "shared" if other is not None else "only in A"
        made_by = layer.created_by or (other.created_by if other is not None else "")
        rows.append(
            DiffRow(platform, "layer", change, digest, layer.size, other.size if other else None, layer.size, made_by)
        )
    for digest, layer in layers_b.items():
        if digest not in layers_a:
            rows.append(DiffRow(platform, "layer", "only in B", digest, None, layer.size, layer.size, layer.created_by))
    return rows


def _config(platform: str, a: dict[str, Any], b: dict[str, Any]) -> list[DiffRow]:
    run_a, run_b = runtime_config(a), runtime_config(b)
    pairs: list[tuple[str, str | None, str | None]] = [
        (name, _value(run_a.get(key)), _value(run_b.get(key))) for name, key in _FIELDS
    ]
    pairs.append(("EXPOSE", _ports(run_a), _ports(run_b)))
    for prefix, values_a, values_b in (
        ("ENV", _env(run_a), _env(run_b)),
        ("LABEL", _labels(run_a), _labels(run_b)),
    ):
        for key in dict.fromkeys([*values_a, *values_b]):
            pairs.append((f"{prefix} {key}", values_a.get(key), values_b.get(key)))
    rows = []
    for key, value_a, value_b in pairs:
        if value_a == value_b:
            continue
        change = "only in B" if value_a is None else "only in A" if value_b is None else "changed"
        rows.append(DiffRow(platform, "config", change, key, value_a, value_b, None, ""))
    return rows


def _value(value: Any) -> str | None:
    """A config value as text (lists as JSON); None for unset, null or empty."""
    if value in (None, "", [], {}):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _ports(run: dict[str, Any]) -> str | None:
    ports = run.get("ExposedPorts")
    return _value(sorted(str(p) for p in ports)) if isinstance(ports, dict) else None


def _env(run: dict[str, Any]) -> dict[str, str]:
    env = run.get("Env")
    found: dict[str, str] = {}
    for item in env if isinstance(env, list) else []:
        if isinstance(item, str):
            key, _, value = item.partition("=")
            found[key] = value
    return found


def _labels(run: dict[str, Any]) -> dict[str, str]:
    labels = run.get("Labels")
    return (
        {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in labels.items()}
        if isinstance(labels, dict)
        else {}
    )


def _clause(layers: list[DiffRow], config: list[DiffRow]) -> str:
    """ "B adds 2 layers (84.0 MiB), removes 1 (12.0 MiB), changes ENV PATH"."""
    added = [r for r in layers if r.change == "only in B"]
    removed = [r for r in layers if r.change == "only in A"]
    parts = []
    if added:
        size = GcRow.binary(sum(r.size or 0 for r in added))
        parts.append(f"adds {len(added)} {'layer' if len(added) == 1 else 'layers'} ({size})")
    if removed:
        size = GcRow.binary(sum(r.size or 0 for r in removed))
        noun = "" if added else (" layer" if len(removed) == 1 else " layers")
        parts.append(f"removes {len(removed)}{noun} ({size})")
    if config:
        names = [r.key for r in config]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        parts.append(f"changes {shown}")
    return "B " + ", ".join(parts) if parts else "same layers and config"
