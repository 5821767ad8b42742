"""`diff A B`: per platform, the layers two images share and those only one has, and the config
fields that changed — with a one-line summary of what B does to A."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..models import Descriptor, DiffRow, GcRow, Platform
from .layers import Image, LayerInfo, Resolved, image_layers, runtime_config, text_mapping

__all__ = ["diff_images", "platform_key"]

#: Config fields compared whole, as a Dockerfile names them, with the config's own key.
_FIELDS = (("USER", "User"), ("WORKDIR", "WorkingDir"), ("ENTRYPOINT", "Entrypoint"), ("CMD", "Cmd"))


@dataclass
class _Side:
    """One image's platform images and lost children, by platform key, each list in index order."""

    images: dict[str, list[Image]] = field(default_factory=dict)
    lost: dict[str, list[tuple[str, Descriptor]]] = field(default_factory=dict)


def diff_images(a: Resolved, b: Resolved) -> tuple[list[DiffRow], str]:
    """Rows of every shared and differing layer and every changed config field, per platform, and
    the one-line summary. Platforms are paired as containerd matches them (`platform_key`); two
    images of one platform on a side pair with the other side's in index order. A child an index
    lists but the registry lost is a `platform` row "missing in A" (or B), never "only in B"."""
    side_a, side_b = _side(a), _side(b)
    rows: list[DiffRow] = []
    #: (platform label, what happened, whether the text stands alone rather than after "label: ").
    clauses: list[tuple[str, str, bool]] = []
    keys = dict.fromkeys([*side_a.images, *side_a.lost, *side_b.images, *side_b.lost])
    for key in keys:
        images_a, images_b = side_a.images.get(key, []), side_b.images.get(key, [])
        lost_a, lost_b = list(side_a.lost.get(key, [])), list(side_b.lost.get(key, []))
        count = max(len(images_a), len(images_b))
        for n in range(count):
            image_a = images_a[n] if n < len(images_a) else None
            image_b = images_b[n] if n < len(images_b) else None
            label = _label(image_a, image_b) + (f" #{n + 1}" if count > 1 else "")
            if image_a is not None and image_b is not None:
                layer_diff = _layers(label, image_a, image_b)
                config_diff = _config(label, image_a.config(), image_b.config())
                rows.extend(layer_diff + config_diff)
                clauses.append((label, _clause(layer_diff, config_diff), False))
                continue
            there = image_a or image_b
            assert there is not None
            gone = lost_b if image_b is None else lost_a
            if gone:  # the other side's index lists this platform, but the registry lost it
                lost_label, desc = gone.pop(0)
                side = "B" if image_b is None else "A"
                a_digest = there.manifest.digest if image_a is not None else None
                b_digest = there.manifest.digest if image_b is not None else None
                rows.append(DiffRow(label, "platform", f"missing in {side}", desc.digest, a_digest, b_digest, None, ""))
                clauses.append((label, f"{side} has lost {lost_label}", True))
                continue
            only = "A" if image_b is None else "B"
            rows.append(
                DiffRow(
                    label,
                    "platform",
                    f"only in {only}",
                    there.manifest.digest,
                    _digest_or_none(image_a),
                    _digest_or_none(image_b),
                    None,
                    "",
                )
            )
            clauses.append((label, f"only {only} has {label}", True))
        for side, gone in (("A", lost_a), ("B", lost_b)):
            for lost_label, desc in gone:  # lost, and the other side has no such platform either
                rows.append(DiffRow(lost_label, "platform", f"missing in {side}", desc.digest, None, None, None, ""))
                clauses.append((lost_label, f"{side} has lost {lost_label}", True))
    compared = [c for c in clauses if not c[2]]
    if len(clauses) == 1 and compared:
        message = compared[0][1]
    else:
        message = "; ".join(text if alone else f"{label}: {text}" for label, text, alone in clauses)
    if a.digest == b.digest:
        message = f"A and B are the same image ({a.digest})"
    return rows, message or "neither image has a platform image to compare"


def _digest_or_none(image: Image | None) -> str | None:
    return image.manifest.digest if image is not None else None


def _side(found: Resolved) -> _Side:
    side = _Side()
    for image in found.images:
        side.images.setdefault(_image_key(image), []).append(image)
    for label, desc in found.lost:
        if not desc.is_attestation:  # diff compares platform images; the broken notice names the rest
            key = platform_key(desc.platform) if desc.platform is not None else ""
            side.lost.setdefault(key, []).append((label, desc))
    return side


def _label(a: Image | None, b: Image | None) -> str:
    """How a pair is named: its platform as A lists it (else B), or for an image without a platform
    its digest, shortened as `inspect` shows a child without one."""
    for image in (a, b):
        if image is not None and image.platform:
            return image.platform
    there = a or b
    return there.manifest.digest[:19] if there is not None else ""


def _image_key(image: Image) -> str:
    os_, _, rest = image.platform.partition("/")
    architecture, _, variant = rest.partition("/")
    return platform_key(Platform(os_, architecture, variant)) if image.platform else ""


#: containerd's `platforms.Normalize`: architecture aliases, and the variant each implies or drops.
_ARCH: dict[str, tuple[str, str | None]] = {
    "i386": ("386", None),
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "aarch64": ("arm64", None),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
}
_VARIANT = {
    "amd64": {"v1": ""},
    "arm64": {"8": "", "v8": "", "v8.0": "", "9": "v9", "9.0": "v9", "v9.0": "v9"},
    "arm": {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"},
}


def platform_key(platform: Platform) -> str:
    """`os/architecture[/variant]` normalised as containerd does before matching: linux/arm64/v8 is
    linux/arm64, linux/arm is linux/arm/v7, x86_64 is amd64; different variants stay apart."""
    os_ = platform.os.lower()
    os_ = "darwin" if os_ == "macos" else os_
    architecture, variant = platform.architecture.lower(), platform.variant.lower()
    architecture, implied = _ARCH.get(architecture, (architecture, None))
    if implied is not None:
        variant = implied
    elif architecture == "386":
        variant = ""
    else:
        variant = _VARIANT.get(architecture, {}).get(variant, variant)
    return str(Platform(os_, architecture, variant))


def _layers(platform: str, a: Image, b: Image) -> list[DiffRow]:
    """Layers compared as lists with repeats (a layer an image has twice is two layers): the n-th
    copy of a digest in A pairs with its n-th copy in B; copies one side has more of are its own."""
    layers_a, layers_b = image_layers(a).layers, image_layers(b).layers
    copies_b: dict[str, list[LayerInfo]] = {}
    for layer in layers_b:
        copies_b.setdefault(layer.digest, []).append(layer)
    rows = []
    seen: Counter[str] = Counter()
    for layer in layers_a:
        copies = copies_b.get(layer.digest, [])
        other = copies[seen[layer.digest]] if seen[layer.digest] < len(copies) else None
        seen[layer.digest] += 1
        change = "shared" if other is not None else "only in A"
        made_by = layer.created_by or (other.created_by if other is not None else "")
        size_b = other.size if other is not None else None
        rows.append(DiffRow(platform, "layer", change, layer.digest, layer.size, size_b, layer.size, made_by))
    in_a = Counter(layer.digest for layer in layers_a)
    seen = Counter()
    for layer in layers_b:
        seen[layer.digest] += 1
        if seen[layer.digest] > in_a[layer.digest]:
            rows.append(
                DiffRow(platform, "layer", "only in B", layer.digest, None, layer.size, layer.size, layer.created_by)
            )
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
    return text_mapping(run.get("Labels"))


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
