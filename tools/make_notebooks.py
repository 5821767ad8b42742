"""Write the notebooks under notebooks/ (outputs stripped). Edit here, then run this script."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell as code
from nbformat.v4 import new_markdown_cell as md
from nbformat.v4 import new_notebook

HERE = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}

START = [
    code("%load_ext jindr_nb"),
    md(
        "Start a registry on this machine (the default is `localhost:5001`, storage in `~/.jindr`). "
        "jindr picks Docker when an engine answers, else the registry binary; starting one that already "
        "runs changes nothing."
    ),
    code("%jindr start"),
]
LOAD = [
    md("Get images in without Docker: the small sample images in `data/` are OCI image layouts."),
    code("%jindr load data/archy\n%jindr load data/tools\n%jindr load data/webapp"),
]

NOTEBOOKS = {
    "quickstart.ipynb": [
        md(
            "# jindr_nb quick start\n\nA private registry on your own machine, managed from a notebook: "
            "every listing comes back as a pandas DataFrame."
        ),
        *START,
        *LOAD,
        md(
            "With Docker at hand, `docker push` works as usual (jindr's registries are on `localhost`, which "
            "Docker treats as an insecure registry it may push to over HTTP)."
        ),
        code(
            "import shutil, subprocess, tempfile\nfrom pathlib import Path\n\n\n"
            "def docker(*args: str) -> str:\n"
            "    # Docker's own chatter (the legacy builder's deprecation notice) shows only if the command fails.\n"
            "    done = subprocess.run(['docker', *args], capture_output=True, text=True)\n"
            "    if done.returncode != 0:\n"
            "        raise RuntimeError(f'docker {args[0]} failed: {done.stderr.strip()}')\n"
            "    return done.stdout.strip()\n\n\n"
            "status = %jindr status\naddress = status.registry[0]\n"
            "if shutil.which('docker') and subprocess.run(['docker', 'info'], capture_output=True).returncode == 0:\n"
            "    context = Path(tempfile.mkdtemp())\n"
            "    (context / 'hello.txt').write_text('hello from the quick start\\n')\n"
            "    (context / 'Dockerfile').write_text('FROM scratch\\nCOPY hello.txt /hello.txt\\n')\n"
            "    image_id = docker('build', '-q', '-t', f'{address}/hello:1', str(context))\n"
            "    docker('push', '-q', f'{address}/hello:1')\n"
            "    print(f'built {image_id[7:19]} with docker and pushed it as {address}/hello:1')\n"
            "else:\n    print('no Docker engine here: the sample images are all this notebook needs')"
        ),
        md("Repositories, then one row per tag (`-l` adds size and created time)."),
        code("%jindr ls"),
        code("images = %jindr lsi -l\nimages"),
        md("`inspect` shows an index and its platforms; BuildKit-style attestations are named as such."),
        code("%jindr inspect archy"),
        md("Delete a tag: only that tag goes, even when another tag shares its digest."),
        code("%jindr rmi tools:1.0"),
        code("%jindr lsi tools"),
        md(
            "Deleting frees no disk until garbage collection, which jindr runs safely (the registry is "
            "paused, and tagged multi-platform images are never touched)."
        ),
        code("%jindr gc"),
        md("`stop` collects again and stops the registry (`-G` skips the collection)."),
        code("%jindr stop"),
    ],
    "multi-platform.ipynb": [
        md(
            "# Multi-platform images\n\nAn *index* (OCI image index, or Docker manifest list) points at one "
            "image manifest per platform; `docker pull` picks the one matching the machine. BuildKit adds "
            "*attestation* manifests (SBOM, provenance) to the index as platform `unknown/unknown` — jindr names "
            "them `attestation` instead of showing them as a platform."
        ),
        *START,
        *LOAD,
        code("%jindr inspect archy:latest"),
        md("`lsi` lists the index once, with its platforms:"),
        code("%jindr lsi archy"),
        md("Build one yourself with `docker buildx` when it is installed (the seed's example):"),
        code(
            "import shutil, subprocess\n"
            "if shutil.which('docker') and subprocess.run(['docker', 'buildx', 'version'], capture_output=True)"
            ".returncode == 0:\n"
            "    print('docker buildx build --platform linux/amd64,linux/arm64 -t localhost:5001/archy --push .')\n"
            "else:\n    print('no docker buildx here: the sample index above is one such image')"
        ),
        code("%jindr stop -G"),
    ],
    "cleanup.ipynb": [
        md(
            "# Cleaning up a registry\n\nThe delete panel lists every tag; filter, select, preview, then delete "
            "with an explicit confirmation. Deleting a tag keeps other tags that share its digest (the panel "
            "names them)."
        ),
        START[0],
        md(
            "Start a registry on this machine (the default is `localhost:5001`, storage in `~/.jindr`), noting "
            "first whether one runs already: this notebook stops, at the end, only a registry it started."
        ),
        code("before = %jindr status\n%jindr start"),
        *LOAD,
        code("panel = %jindr rmi\npanel"),
        md("The same cleanup by code: filter the listing with pandas, then delete what it selected."),
        code("df = %jindr lsi\nold = df[(df.repository == 'tools') & (df.tag != 'latest')]\nold"),
        code("for image in old.repository + ':' + old.tag:\n    %jindr rmi {image}\n%jindr lsi tools"),
        md(
            "When you are done with the panel: stop the registry if this notebook started it (a registry that "
            "was already running stays as it was). The panel needs it running, so run this cell last."
        ),
        code(
            "if before.status[0] == 'running':\n"
            "    print(f'{before.registry[0]} was running before this notebook: left running')\n"
            "else:\n"
            "    %jindr stop -G"
        ),
    ],
    "analysis.ipynb": [
        md("# The registry as data\n\nEvery listing is a DataFrame, so the usual pandas questions work."),
        *START,
        *LOAD,
        md(
            "And older builds, from one layout holding several images (each goes under its own name): "
            "`webapp:1.0`, its rebuild `webapp:1.1`, and `api:1.4`, all on the same base and Python layers."
        ),
        code("%jindr load data/releases"),
        code("images = %jindr lsi -l\nimages[['repository', 'tag', 'image_id', 'platforms', 'size', 'created']]"),
        md("**Tags sharing a digest**: deleting one of them by tag keeps the others."),
        code("images.groupby('digest').filter(lambda g: len(g) > 1)[['repository', 'tag', 'image_id']]"),
        md("**Platform coverage**: which repository ships which platforms."),
        code(
            "import pandas as pd\n"
            "per_platform = images.explode('platforms')\n"
            "pd.crosstab(per_platform['repository'], per_platform['platforms'])"
        ),
        md("**Size by repository** (compressed layers + configs, as pulled; shared layers counted in each)."),
        code("images.groupby('repository')['size'].sum().sort_values(ascending=False)"),
        md("**Oldest tags first**, by the newest platform's `created` time."),
        code("images.sort_values('created')[['repository', 'tag', 'created']].head()"),
        md(
            "## What the images are made of\n\n`layers` has one row per layer of every tag and platform: its "
            "size, the Dockerfile step that made it (`created_by`, from the config's history) and `shared_by`, "
            "how many platform images use it."
        ),
        code(
            "layers = %jindr layers\n"
            "layers['layer'] = layers.layer_digest.str[7:19]  # short ids, as docker shows them\n"
            "layers[['repository', 'tag', 'platform', 'position', 'layer', 'size', 'created_by', 'shared_by']].head(7)"
        ),
        md(
            "**Which layers do most images share?** Each is stored once, whatever the number of images; "
            "`first_seen` is the oldest image that has it."
        ),
        code(
            "distinct = layers.drop_duplicates('layer_digest')\n"
            "distinct.nlargest(4, 'shared_by')[['layer', 'shared_by', 'size', 'first_seen', 'created_by']]"
        ),
        md("**Layers in more than one repository**, and how many rows (tag × platform) of each use them:"),
        code("uses = pd.crosstab(layers['layer'], layers['repository'])\nuses[(uses > 0).sum(axis=1) > 1]"),
        md("**What sharing saves**: the layer bytes of every image, counted per image, against the bytes stored."),
        code(
            "per_image = layers.drop_duplicates(['manifest_digest', 'layer_digest'])['size'].sum()\n"
            "stored = distinct['size'].sum()\n"
            "print(f'{per_image} bytes of layers over all images, {stored} stored: sharing saves "
            "{1 - stored / per_image:.0%}')"
        ),
        md("**The biggest layers, and the steps that made them**:"),
        code("distinct.nlargest(5, 'size')[['layer', 'size', 'created_by', 'first_seen', 'shared_by']]"),
        md("**Storage by Dockerfile step**, over the distinct layers: which kind of step costs the most."),
        code("distinct.groupby('created_by')['size'].agg(['count', 'sum']).sort_values('sum', ascending=False)"),
        md(
            "**The history of one image**: every build step, the ones that made no layer (ENV, LABEL, CMD ...) "
            "included. The steps the build cache reused for this rebuild kept their original time."
        ),
        code(
            "history = %jindr history webapp:1.1\n"
            "history[history.platform == 'linux/amd64'][['step', 'created', 'created_by', 'empty_layer', 'size']]"
        ),
        md("**An index's platforms side by side**: what each platform image of `webapp:2.0` runs."),
        code(
            "config = %jindr config webapp:2.0\n"
            "config.set_index('platform')[['architecture', 'user', 'working_dir', 'cmd', 'env', 'exposed_ports', "
            "'config_digest']].T"
        ),
        md(
            "**What a rebuild changed**: `diff` matches the platforms of two images and lists the layers they "
            "share, the layers only one has, and the config fields that changed (the line above the table sums "
            "it up)."
        ),
        code(
            "diff = %jindr diff webapp:1.0 webapp:1.1\n"
            "diff.loc[diff.change != 'shared', ['platform', 'change', 'key', 'a', 'b', 'created_by']]"
        ),
        md("**What upgrading costs** a machine that has `webapp:1.0`: the bytes only 1.1 has, per platform."),
        code("diff[(diff.what == 'layer') & (diff.change == 'only in B')].groupby('platform')['size'].sum()"),
        md(
            "**Where the space goes**: `du` counts each distinct blob once per repository; `unique_size` is what "
            "deleting the repository (and collecting) would free, `shared_size` stays because other repositories "
            "use the same layers. The rows are repositories only, so they sum and group as you would expect."
        ),
        code("%jindr du"),
        md(
            "**The registry's totals**, every count distinct across repositories (a layer three repositories "
            "share counts once), with the disk it takes and what `gc` would reclaim now."
        ),
        code("%jindr du --total"),
        code("%jindr stop -G"),
    ],
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata=KERNEL)
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{name.split('.')[0]}-{i}"
        nbformat.write(nb, HERE / name)
    print(f"wrote {len(NOTEBOOKS)} notebooks under {HERE}")


if __name__ == "__main__":
    main()
