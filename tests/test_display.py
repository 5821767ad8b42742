"""What Jupyter shows for the frames `%jindr` returns (frames.frame_html through IPython's HTML
formatter), against a real registry: sizes with units, short digests with the full value in the
page, short media types, times to the second, useful columns first, du's bars, inspect's tree —
and the frames' own values untouched."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from rig import ImageFactory, make_layer

from jindr_nb.client import RegistryClient
from jindr_nb.models import DOCKER_MANIFEST, OCI_MANIFEST

DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
UNIT = re.compile(r"(\d+(?:\.\d)?) (B|KiB|MiB|GiB|TiB)\Z")
BYTE_COLUMNS = {"size", "unique_size", "shared_size", "reclaimed_bytes", "disk_before", "disk_after", "disk_freed"}
BYTE_COLUMNS |= {"bytes_copied", "disk_bytes", "gc_bytes"}
SHORT_TYPES = {
    "application/vnd.oci.image.index.v1+json": "OCI index",
    OCI_MANIFEST: "OCI image",
    "application/vnd.docker.distribution.manifest.list.v2+json": "Docker list",
    DOCKER_MANIFEST: "Docker image",
}


class Cell:
    def __init__(self) -> None:
        self.text, self.visible, self.titles, self.classes, self.styles = "", "", [], [], []


class Table(HTMLParser):
    """The first table of an HTML output: header names and rows of cells (all text, the text a
    person sees — outside `jindr-rest` — and the titles, classes and styles inside each cell)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[list[Cell]] = []
        self._cell: Cell | None = None
        self._hidden = 0
        self._depth = 0
        self._in_head = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = Cell()
        elif self._cell is not None:
            self._depth += 1
            if "jindr-rest" in (a.get("class") or "") and not self._hidden:
                self._hidden = self._depth
            self._cell.titles += [a["title"]] if "title" in a else []
            self._cell.classes += (a.get("class") or "").split()
            self._cell.styles += [a["style"]] if "style" in a else []

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            if self._in_head:
                self.headers.append(self._cell.text)
            else:
                self.rows[-1].append(self._cell)
            self._cell = None
        elif self._cell is not None:
            if self._hidden == self._depth:
                self._hidden = 0
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.text += data
            if not self._hidden:
                self._cell.visible += data


@pytest.fixture(scope="module")
def ip() -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jindr_nb")
    return shell


def shown(ip: InteractiveShell, frame: pd.DataFrame) -> tuple[str, Table]:
    data, _ = ip.display_formatter.format(frame)
    assert data["text/plain"] == repr(frame)  # the text repr stays pandas' own
    return data["text/html"], Table(data["text/html"])


def check_cells(ip: InteractiveShell, frame: pd.DataFrame) -> Table:
    """Every shown cell against the frame's raw value: sizes in binary units that give back the
    bytes (and the exact count in the title), digests as sha256 + 12 hex with the whole digest in
    the text and the title, manifest media types by short name, times to the second."""
    assert frame.attrs["jindr"]
    html, table = shown(ip, frame)
    assert table.rows, html
    for row in table.rows:
        record = frame.loc[int(row[0].text)]
        for name, cell in zip(table.headers[1:], row[1:], strict=True):
            if name not in frame.columns:
                continue  # a picture column (the tree, the bars)
            raw = record[name]
            if name in BYTE_COLUMNS and not pd.isna(raw):
                number, unit = UNIT.match(cell.visible).groups()
                scale = 1024 ** ["B", "KiB", "MiB", "GiB", "TiB"].index(unit)
                assert abs(float(number) * scale - raw) <= 0.05 * scale, (name, cell.visible, raw)
                assert cell.titles == [f"{int(raw):,} bytes"]
            elif isinstance(raw, str) and DIGEST.match(raw):
                assert cell.text == raw and cell.titles == [raw] and cell.visible == raw[:19], (name, cell.visible)
            elif name == "media_type" and raw in SHORT_TYPES:
                assert cell.visible == SHORT_TYPES[raw] and cell.titles == [raw]
            elif isinstance(raw, pd.Timestamp) and not pd.isna(raw):
                assert cell.visible == raw.strftime("%Y-%m-%d %H:%M:%S"), cell.visible
    return table


@pytest.fixture()
def images(process_registry: str) -> dict:
    """A registry jindr runs: an OCI index with attestations (two tags), a Docker list, a single
    Docker image, and two repositories sharing a layer."""
    with RegistryClient(process_registry) as client:
        f = ImageFactory(client, seed=31)
        pushed = {
            "oci": f.index("multi/oci", ["latest", "v1"], layers=(1, 2)),
            "list": f.index("multi/docker", ["1.0"], oci=False),
            "single": f.single("plain", ["latest"]),
        }
        base = make_layer(4096, f.rng)
        for repository in ("team/a", "team/b"):
            raw, digest, _, _ = f.image_manifest(repository, oci=False, shared_layers=[base])
            client.put_manifest(repository, "1", raw, DOCKER_MANIFEST)
    return {"address": process_registry, **pushed}


def test_lsi_long_reads_well_and_stays_data(ip: InteractiveShell, images: dict) -> None:
    address = images["address"]
    df = ip.run_line_magic("jindr", f"-r {address} lsi -l")
    # The values stay raw: integer bytes, full digests, tz-aware times; print and CSV untouched.
    assert df["size"].dtype == "int64" and str(df["created"].dtype).endswith(", UTC]")
    by_tag = df.set_index(["repository", "tag"])
    assert by_tag.loc[("multi/oci", "v1"), "digest"] == images["oci"].digest
    assert by_tag.loc[("plain", "latest"), "size"] == images["single"].size
    assert by_tag.loc[("multi/docker", "1.0"), "digest"] == images["list"].digest
    assert int(df["size"].sum()) == int(df["size"].to_numpy().sum()) > images["single"].size  # sums bytes
    assert images["oci"].digest in str(df.to_csv()) and str(images["single"].size) in df.to_csv()
    assert df.created.iloc[0].microsecond != 0  # the factory's times have fractions; only the display drops them
    html, table = shown(ip, df)
    # The columns a person reads first, then the identifiers.
    assert table.headers[1:6] == ["repository", "tag", "platforms", "size", "created"]
    assert table.headers.index("digest") > table.headers.index("created")
    assert sorted(table.headers[1:]) == sorted(df.columns)
    check_cells(ip, df)
    rows = {(r[1].text, r[2].text): r for r in table.rows}
    assert rows[("multi/oci", "latest")][3].visible == "linux/amd64, linux/arm64"
    assert rows[("multi/oci", "latest")][table.headers.index("media_type")].visible == "OCI index"
    assert rows[("multi/docker", "1.0")][table.headers.index("media_type")].visible == "Docker list"
    assert rows[("plain", "latest")][table.headers.index("media_type")].visible == "Docker image"
    for digest in df.digest:  # the whole digest is on the page, and in a title
        assert f'title="{digest}"' in html
    # A selection keeps its own column order and its formatting.
    picked = df[["tag", "digest", "size"]]
    _, sub = shown(ip, picked)
    assert sub.headers[1:] == ["tag", "digest", "size"]
    check_cells(ip, picked)


def test_inspect_shows_the_index_as_a_tree(ip: InteractiveShell, images: dict) -> None:
    address = images["address"]
    df = ip.run_line_magic("jindr", f"-r {address} inspect multi/oci:latest plain")
    table = check_cells(ip, df)
    assert table.headers[1] == "image"
    tree = [row[1] for row in table.rows]
    kinds = [df.loc[int(row[0].text), "kind"] for row in table.rows]
    assert kinds == list(df.kind)  # the frame's order, each row once
    roots = [i for i, cell in enumerate(tree) if "jindr-root" in cell.classes]
    assert [tree[i].visible for i in roots] == ["multi/oci:latest", "plain:latest (linux/amd64)"]
    children = tree[1 : roots[1]]
    assert [c.visible for c in children if "attestation" not in c.visible] == [
        "├─ linux/amd64",
        "├─ linux/arm64",
    ]
    assert len(images["oci"].attestations) == 2
    assert [c.visible for c in children if "attestation" in c.visible] == ["├─ attestation", "└─ attestation"]
    assert all("jindr-attestation" in c.classes for c in children[2:])


def test_du_draws_unique_and_shared_bars(ip: InteractiveShell, images: dict) -> None:
    address = images["address"]
    df = ip.run_line_magic("jindr", f"-r {address} du")
    assert df["unique_size"].dtype == "int64"
    html, table = shown(ip, df)
    check_cells(ip, df)
    assert table.headers[1:3] == ["repository", "space"]
    assert "only this repository" in html and "shared with other repositories" in html
    scale = int((df.unique_size + df.shared_size).max())
    for row in table.rows:
        record = df.loc[int(row[0].text)]
        widths = [float(re.search(r"width: ([\d.]+)%", s).group(1)) for s in row[2].styles]
        assert row[2].classes[:3] == ["jindr-bar", "jindr-unique", "jindr-shared"]
        assert widths == pytest.approx([100 * record.unique_size / scale, 100 * record.shared_size / scale], abs=0.1)
    shared = df.set_index("repository").shared_size
    assert shared["team/a"] > 0 and shared["team/b"] > 0 and shared["plain"] == 0


def test_every_command_gets_the_treatment(ip: InteractiveShell, images: dict, registry, tmp_path: Path) -> None:
    address = images["address"]
    jindr = lambda line: ip.run_line_magic("jindr", f"-r {address} {line}")  # noqa: E731
    frames = {
        "status": jindr("status"),
        "ls": jindr("ls"),
        "du --total": jindr("du --total"),
        "layers": jindr("layers"),
        "history": jindr("history multi/oci:latest"),
        "config": jindr("config multi/oci:latest"),
        "diff": jindr("diff multi/oci:latest multi/docker:1.0"),
        "cp": jindr(f"cp multi/oci:latest {registry.address}"),
        "save": jindr(f"save plain:latest {tmp_path / 'plain.tar'}"),
        "load": jindr(f"load {tmp_path / 'plain.tar'} loaded/plain:1"),
        "rmi": jindr("rmi multi/docker:1.0"),
        "gc --dry-run": jindr("gc --dry-run"),
        "gc": jindr("gc"),
    }
    for command, df in frames.items():
        assert not df.empty, command
        table = check_cells(ip, df)
        assert len(table.rows) == len(df), command
    assert frames["gc"].reclaimed_bytes[0] > 0 and frames["gc"].reclaimed_bytes.dtype == "int64"
    assert frames["gc"].reclaimed_bytes[0] == frames["gc --dry-run"].reclaimed_bytes[0]
    assert frames["cp"].digest[0] == images["oci"].digest
    # diff's a/b hold sizes on layer rows (with units) and values on config rows (as they are).
    diff = frames["diff"]
    _, table = shown(ip, diff)
    for row in table.rows:
        record = diff.loc[int(row[0].text)]
        a = row[table.headers.index("a")].visible
        if record.what == "layer" and isinstance(record.a, int):
            assert UNIT.match(a), a
    # stop, and stop again: nothing to stop is said in one line, not as a header-only table.
    jindr("stop -G")
    again = jindr("stop -G")
    assert again.empty
    html, _ = shown(ip, again)
    assert "No registry is running" in html and "<table" not in html


def test_text_is_escaped(ip: InteractiveShell, process_registry: str) -> None:
    step = "RUN echo '<b>bold</b>' && cat a<b # & more"
    with RegistryClient(process_registry) as client:
        ImageFactory(client, seed=5).image_with_history("esc", "1", [{"created_by": step}])
    df = ip.run_line_magic("jindr", f"-r {process_registry} history esc:1")
    assert df.created_by[0] == step  # the value is the config's, exactly
    html, table = shown(ip, df)
    assert "<b>bold" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert table.rows[0][table.headers.index("created_by")].text == step


def test_many_rows_are_cut_as_pandas_cuts_them(ip: InteractiveShell, images: dict) -> None:
    address = images["address"]
    df = ip.run_line_magic("jindr", f"-r {address} lsi -l")
    big = pd.concat([df] * 4000, ignore_index=True)  # 20,000 rows, still jindr's frame
    assert big.attrs["jindr"] == "LongImageRow"
    start = time.perf_counter()
    html, table = shown(ip, big)
    took = time.perf_counter() - start
    print(f"HTML of {len(big)} rows: {took * 1000:.1f} ms")
    assert took < 1.0
    assert len(table.rows) == pd.get_option("display.min_rows") + 1  # and pandas' "..." row
    assert f"{len(big)} rows × {len(big.columns)} columns" in html
    assert [r[0].text for r in table.rows][:2] == ["0", "1"] and table.rows[-1][0].text == str(len(big) - 1)
    with pd.option_context("display.max_rows", 100_000):
        _, all_rows = shown(ip, big.head(500))
    assert len(all_rows.rows) == 500


def test_other_frames_are_left_to_pandas(ip: InteractiveShell) -> None:
    plain = pd.DataFrame({"size": [1048576], "digest": ["sha256:" + "a" * 64]})
    data, _ = ip.display_formatter.format(plain)
    assert data["text/html"] == plain._repr_html_()
