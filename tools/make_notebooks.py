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
            "import shutil, subprocess, tempfile\nfrom pathlib import Path\n\n"
            "status = %jindr status\naddress = status.registry[0]\n"
            "if shutil.which('docker') and subprocess.run(['docker', 'info'], capture_output=True).returncode == 0:\n"
            "    context = Path(tempfile.mkdtemp())\n"
            "    (context / 'hello.txt').write_text('hello from the quick start\\n')\n"
            "    (context / 'Dockerfile').write_text('FROM scratch\\nCOPY hello.txt /hello.txt\\n')\n"
            "    subprocess.run(['docker', 'build', '-q', '-t', f'{address}/hello:1', str(context)], check=True)\n"
            "    subprocess.run(['docker', 'push', '-q', f'{address}/hello:1'], check=True)\n"
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
        *START,
        *LOAD,
        code("panel = %jindr rmi\npanel"),
        md("The same cleanup by code: filter the listing with pandas, then delete what it selected."),
        code("df = %jindr lsi\nold = df[(df.repository == 'tools') & (df.tag != 'latest')]\nold"),
        code("for image in old.repository + ':' + old.tag:\n    %jindr rmi {image}\n%jindr lsi tools"),
    ],
    "analysis.ipynb": [
        md("# The registry as data\n\nEvery listing is a DataFrame, so the usual pandas questions work."),
        *START,
        *LOAD,
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
